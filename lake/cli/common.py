"""Shared pieces of the command line: options, progress display, output formats."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # polars and tqdm load when a command prints a frame or a bar, not for --help
    import polars as pl


def add_lake_option(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--lake", required=required, metavar="LAKE", help="the lake folder")


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


def print_frame(df: pl.DataFrame, fmt: str) -> None:
    import polars as pl

    if fmt == "csv":
        sys.stdout.write(df.write_csv())
    elif fmt == "json":
        sys.stdout.write(json.dumps(df.to_dicts(), default=str, indent=1) + "\n")
    else:
        with pl.Config(tbl_rows=200, tbl_cols=50, fmt_str_lengths=80, tbl_width_chars=200):
            print(df)


def print_mapping(data: dict[str, Any]) -> None:
    width = max(len(k) for k in data)
    for k, v in data.items():
        print(f"{k:<{width}}  {v}")
