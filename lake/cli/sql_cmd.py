"""``lake sql --lake LAKE "SELECT ..." [--format table|csv|json] [--out FILE [--force]]``.

The query runs in the lake's read-only sandbox (:mod:`lake.catalog.sandbox`): one query, no writes,
no files but the tables'. ``--out`` is how a result leaves: this process writes it (never DuckDB's
``COPY``), atomically, and never into a lake, the key folder or a vault.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from lake.cli.common import (
    DEFAULT_MAX_ROWS,
    TABLE_COLUMNS,
    add_lake_option,
    add_memory_option,
    csv_frame,
    json_text,
    print_frame,
    print_left_out,
)
from lake.config import CONFIG_NAME, lake_home
from lake.errors import LakeError

if TYPE_CHECKING:
    import pyarrow as pa

    from lake.catalog.sandbox import Rendered

# duckdb, pyarrow and the Lake are imported when the command runs, not by `lake --help`

#: File formats of ``--out`` by extension.
OUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json"}


class QueryError(LakeError, ValueError):
    pass


class OutputPathError(LakeError, ValueError):
    """``--out`` names a place a result must not go (a lake, the key folder, a vault) or an existing file."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sql",
        help="run one read-only DuckDB query over the lake's tables and views",
        description="Run one query (SELECT, WITH, VALUES, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN [ANALYZE]) "
        "over the lake's tables and views. Statements that write (COPY, EXPORT, ATTACH, CREATE, ...), change "
        "settings (SET, PRAGMA, INSTALL, LOAD) or read other files are refused; --out FILE exports a result.",
    )
    add_lake_option(p)
    add_memory_option(p)
    p.add_argument("query", metavar="SQL", help="one DuckDB query over the tables and views (quote it)")
    p.add_argument(
        "--format",
        choices=("table", "csv", "json", "parquet"),
        default=None,
        help="on stdout: table (default), csv or json (lists and structs as JSON text in csv); with --out: "
        "csv, json or parquet (default: from the extension of FILE)",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        help="write every row of the result to FILE instead of stdout, as .csv, .parquet (.pq) or .json (or "
        "--format); FILE must be outside any lake, the key folder and vaults; written atomically (default: stdout)",
    )
    p.add_argument("--force", action="store_true", help="with --out, replace FILE if it exists (default: refuse)")
    p.add_argument(
        "--max-rows",
        type=int,
        default=DEFAULT_MAX_ROWS,
        metavar="N",
        help=f"table format: print the first N rows and say how many there were; 0 prints all "
        f"(default {DEFAULT_MAX_ROWS}); csv, json and --out always hold every row",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import duckdb

    import lake

    lk = lake.open(args.lake)
    out: Path | None = args.out
    if out is not None:
        target = check_out_path(out, lk.local_root, args.force)  # before the query: nothing is run or written
        fmt = out_format(out, args.format)
    elif args.format == "parquet":
        raise QueryError("--format parquet writes a file: add --out FILE.parquet")
    fmt_shown = args.format or "table"
    try:
        if out is None and fmt_shown == "table":
            # DuckDB renders the table itself: `lake sql` loads neither pyarrow nor polars
            rendered = lk.connection().render(args.query, args.max_rows, TABLE_COLUMNS)
            print_rendered(rendered, args.max_rows)
            return 0
        table = lk.connection().arrow(args.query)
    except duckdb.Error as exc:
        raise QueryError(f"{exc}; tables and views: {', '.join(lk.tables())}") from exc
    if out is None:
        import polars as pl

        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        print_frame(df, fmt_shown, args.max_rows)
        return 0
    write_result(table, target, fmt, args.force)
    print(f"wrote {table.num_rows} rows to {target} ({fmt})")
    return 0


def print_rendered(rendered: Rendered, max_rows: int) -> None:
    """A rendered table on stdout; on stderr, how many rows and columns it left out and how to get them."""
    sys.stdout.write(rendered.text)
    print_left_out(min(max_rows, rendered.rows) if max_rows > 0 else rendered.rows, rendered.rows, rendered.columns)


def out_format(out: Path, given: str | None) -> str:
    """The file format of ``--out``: ``given`` or the extension's; raises :class:`QueryError`."""
    if given == "table":
        raise QueryError("--out writes csv, json or parquet, not table: drop --format or choose one of those")
    fmt = given or OUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise QueryError(
            f"cannot tell the format of {out} from its extension: name it .csv, .parquet or .json, or add "
            "--format csv|json|parquet"
        )
    return fmt


def check_out_path(out: Path, lake_root: Path | None, force: bool) -> Path:
    """The resolved ``out`` if a result may be written there; raises :class:`OutputPathError`.

    Refused: a path inside any lake (a folder holding ``lake.json``, this lake or another), inside
    ``$LAKE_HOME/keys`` (keys and default vaults) or a ``*.vault`` folder, a directory, and an
    existing file unless ``force``.
    """
    target = Path(os.path.realpath(out))
    keys = Path(os.path.realpath(lake_home() / "keys"))
    lake_dir = Path(os.path.realpath(lake_root)) if lake_root is not None else None  # None: in object storage
    for folder in target.parents:
        if folder == lake_dir or (folder / CONFIG_NAME).is_file():
            raise OutputPathError(f"--out {out} is inside the lake {folder}: write results outside every lake")
        if folder == keys or folder.name.endswith(".vault"):
            raise OutputPathError(
                f"--out {out} is inside {folder}, which holds keys or a vault: write results elsewhere"
            )
    if target.is_dir():
        raise OutputPathError(f"--out {out} is a directory: name a file in it")
    if not target.parent.is_dir():
        raise OutputPathError(f"--out {out}: the folder {target.parent} does not exist; create it first")
    if target.exists() and not force:
        raise OutputPathError(f"--out {out} exists: add --force to replace it, or choose another name")
    return target


def write_result(table: pa.Table, target: Path, fmt: str, force: bool) -> None:
    """Write ``table`` to ``target`` atomically: a temporary file beside it, then a rename.

    Without ``force`` the rename is a hard link, which fails if ``target`` appeared meanwhile.
    """
    import polars as pl
    import pyarrow.parquet as pq

    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            if fmt == "parquet":
                pq.write_table(table, f, compression="zstd")
            else:
                df = pl.from_arrow(table)
                assert isinstance(df, pl.DataFrame)
                if fmt == "csv":
                    csv_frame(df).write_csv(f)
                else:
                    f.write(json_text(df).encode())
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # as an ordinary new file, not mkstemp's 0600
        _publish(tmp, target, force)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _publish(tmp: Path, target: Path, force: bool) -> None:
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise OutputPathError(f"--out {target} exists: add --force to replace it, or choose another name") from None
    except OSError:  # a file system without hard links
        if target.exists():
            raise OutputPathError(f"--out {target} exists: add --force to replace it") from None
        os.replace(tmp, target)
