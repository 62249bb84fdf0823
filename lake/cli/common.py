"""Shared pieces of the command line: options, progress display, output formats."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # polars and tqdm load when a command prints a frame or a bar, not for --help
    import polars as pl


def add_lake_option(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--lake", required=required, metavar="LAKE", help="the lake folder, or s3://bucket/prefix (see README)"
    )


#: Commands that work on a lake in object storage (``--lake s3://bucket/prefix``; endpoint and
#: credentials from the environment). Every other command refuses such a lake before it starts:
#: ``demo`` (it builds a lake in a folder: ``lake replicate --to s3://...`` publishes it) and ``listen``
#: (a DICOM listener commits as files arrive, for hours, under the folder's lock; a staged write
#: holds the lease and publishes once, at its end: listen into a folder and replicate).
OBJECT_STORE_COMMANDS = frozenset(
    {
        "sql",
        "info",
        "cohort",
        "export nifti",
        "export teaching",
        "verify",
        "replicate",
        "init",
        "ingest",
        "forget",
        "vacuum",
        "optimize",
        "review",
        "restore",
        "audit-phi",
    }
)
#: Of those, the commands that write: run on a local copy and published (:mod:`lake.storage.staging`).
STAGED_COMMANDS = frozenset({"init", "ingest", "forget", "vacuum", "optimize", "review", "restore", "export teaching"})
#: Of those, the commands that may find no lake at the location (they make it, or bring it back).
CREATING_COMMANDS = frozenset({"init", "ingest", "restore"})
#: Commands that read every file: run on a local copy of the tables and metadata, nothing published
#: (:func:`lake.storage.staging.local_view`).
VIEWED_COMMANDS = frozenset({"audit-phi"})


def command_name(args: argparse.Namespace) -> str:
    """``args.command``, with the kind of export (``export teaching``)."""
    return args.command if args.command != "export" else f"export {getattr(args, 'kind', '')}".strip()


def run_command(args: argparse.Namespace) -> int:
    """``args.func(args)``; a writing command on a lake in object storage runs on a staged copy that is
    published when the command returns (its exit code as it is: an interrupted ingest's batches too)."""
    from lake.storage.options import is_object_url

    location = getattr(args, "lake", None)
    name = command_name(args)
    if name not in STAGED_COMMANDS | VIEWED_COMMANDS or not location or not is_object_url(str(location)):
        return int(args.func(args) or 0)
    from lake.config import LakePaths
    from lake.errors import LakeError, LakeNotFoundError
    from lake.storage.staging import local_view, staged_lake

    if name not in CREATING_COMMANDS and not LakePaths(str(location)).exists():
        raise LakeNotFoundError(location)  # before a lease is taken or anything is copied
    quiet = bool(getattr(args, "quiet", False))
    say = None if quiet else lambda m: print(m, file=sys.stderr)
    staging: AbstractContextManager[Path]
    if name in VIEWED_COMMANDS:
        staging = local_view(str(location), on_message=say)
    else:  # a restore compares every file by SHA-256: it stages every shard too
        staging = staged_lake(str(location), on_message=say, whole=name == "restore")
    with staging as folder:
        args.lake = str(folder)
        # what the command prints names the lake, not the temporary folder it runs on
        with _naming(str(folder), str(location)):
            try:
                return int(args.func(args) or 0)
            except LakeError as exc:
                if exc.args and str(folder) in str(exc.args[0]):
                    exc.args = (str(exc.args[0]).replace(str(folder), str(location)), *exc.args[1:])
                raise


class _Renamed:
    """A text stream that writes ``old`` as ``new`` (the rest of the stream's API passes through)."""

    def __init__(self, stream: Any, old: str, new: str) -> None:
        self._stream, self._old, self._new = stream, old, new

    def write(self, text: str) -> int:
        return int(self._stream.write(text.replace(self._old, self._new)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _naming(old: str, new: str) -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Renamed(sys.stdout, old, new), _Renamed(sys.stderr, old, new)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def check_lake_location(args: argparse.Namespace) -> None:
    """Raise :class:`~lake.errors.FolderLakeOnlyError` when ``--lake`` is an object store URL and the
    command works on a lake in a folder only (nothing has run yet)."""
    from lake.errors import FolderLakeOnlyError
    from lake.storage.options import is_object_url

    location = getattr(args, "lake", None)
    if not location or not is_object_url(str(location)):
        return
    name = command_name(args)
    if name not in OBJECT_STORE_COMMANDS:
        raise FolderLakeOnlyError(f"lake {name}", str(location))


def add_memory_option(parser: argparse.ArgumentParser) -> None:
    from lake.cli.argtypes import memory_limit

    parser.add_argument(
        "--memory-limit",
        type=memory_limit,
        default=None,
        metavar="SIZE",
        help="memory budget of the command, e.g. 4GB or 512MB (DuckDB spills to disk beyond it; none: unbounded); "
        "default $LAKE_MEMORY_LIMIT, else min(25%% of RAM, 4GB)",
    )


def add_key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-file",
        metavar="KEY",
        help="the lake's secret key (default: $LAKE_HOME/keys/<lake id>.key, LAKE_HOME defaulting to ~/.config/lake)",
    )


class FileProgress:
    """A progress bar on stderr with files/s and MB/s."""

    def __init__(self, description: str, enabled: bool = True, unit: str = " files") -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc=description, unit=unit, file=sys.stderr, disable=not enabled, dynamic_ncols=True)
        self.bytes = 0
        self.t0 = time.monotonic()

    def __call__(self, nbytes: int) -> None:
        self.bytes += nbytes
        self.bar.update(1)
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        if self.bytes:
            self.bar.set_postfix_str(f"{self.bytes / elapsed / 1e6:.1f} MB/s", refresh=False)

    def close(self) -> None:
        self.bar.close()


class RowProgress:
    """A progress bar on stderr with rows/s, relabelled per table (``lake optimize``)."""

    def __init__(self, description: str, enabled: bool = True) -> None:
        from tqdm import tqdm

        self.description = description
        self.bar = tqdm(desc=description, unit=" rows", file=sys.stderr, disable=not enabled, dynamic_ncols=True)
        self.table = ""

    def __call__(self, table: str, rows: int) -> None:
        if table != self.table:
            self.table = table
            self.bar.set_description_str(f"{self.description} {table}", refresh=False)
        self.bar.update(rows)

    def close(self) -> None:
        self.bar.close()


#: Rows ``print_frame`` shows in table format unless told otherwise (``lake sql --max-rows``).
DEFAULT_MAX_ROWS = 200
TABLE_COLUMNS = 50


def csv_frame(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with what CSV cannot hold as text a CSV reader keeps: lists and structs as JSON text
    (``["ORIGINAL","PRIMARY"]``, ``[0.5,0.5]``), binary as base64; a null stays an empty field."""
    import polars as pl

    columns = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.List | pl.Array | pl.Struct):
            # json_encode works on structs: wrap the value as {"v": ...} and keep the ... part
            text = pl.struct(col.alias("v")).struct.json_encode().str.slice(5).str.head(-1)
            columns.append(pl.when(col.is_null()).then(pl.lit(None, pl.String)).otherwise(text).alias(name))
        elif dtype == pl.Binary:
            columns.append(col.bin.encode("base64").alias(name))
        else:
            columns.append(col)
    return df.select(columns)


def json_text(df: pl.DataFrame) -> str:
    """The rows as a JSON array of objects (dates, times and other non-JSON values as text)."""
    return json.dumps(df.to_dicts(), default=str, indent=1) + "\n"


def print_frame(df: pl.DataFrame, fmt: str, max_rows: int = DEFAULT_MAX_ROWS) -> None:
    """``df`` on stdout as ``table``, ``csv`` or ``json``.

    A table shows at most ``max_rows`` rows (0: all) and says on stderr how many there were and how
    to get them all; csv and json always hold every row.
    """
    import polars as pl

    if fmt == "csv":
        sys.stdout.write(csv_frame(df).write_csv())
    elif fmt == "json":
        sys.stdout.write(json_text(df))
    else:
        shown = df.height if max_rows <= 0 else min(max_rows, df.height)
        with pl.Config(tbl_rows=max(shown, 1), tbl_cols=TABLE_COLUMNS, fmt_str_lengths=80, tbl_width_chars=200):
            print(df.head(shown))
        print_left_out(shown, df.height, df.width)


def print_left_out(shown_rows: int, rows: int, columns: int) -> None:
    """On stderr: how many rows and columns a printed table left out, and how to get them all."""
    if shown_rows < rows:
        print(
            f"showing the first {shown_rows} of {rows} rows: --max-rows N shows more (0: all); "
            "--format csv|json or --out FILE gives every row",
            file=sys.stderr,
        )
    if columns > TABLE_COLUMNS:
        print(
            f"showing {TABLE_COLUMNS} of {columns} columns: select the ones you need, or use "
            "--format csv|json or --out FILE for all",
            file=sys.stderr,
        )


def print_mapping(data: dict[str, Any]) -> None:
    width = max(len(k) for k in data)
    for k, v in data.items():
        print(f"{k:<{width}}  {v}")
