"""``lake optimize --lake LAKE [--force]``: merge small pixel arrays, compact and sort the tables (see
lake.catalog.optimize)."""

from __future__ import annotations

import argparse
import sys

from lake.cli.common import RowProgress, add_lake_option, add_memory_option
from lake.config import LakePaths
from lake.errors import LakeNotFoundError
from lake.interrupts import Interrupted


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "optimize",
        help="merge the small pixel arrays of each series, compact small files into sorted zstd Parquet with "
        "statistics and a bloom filter on the key, and rebuild the header index",
    )
    add_lake_option(p)
    add_memory_option(p)
    p.add_argument("--force", action="store_true", help="rewrite even tables unchanged since their last optimize")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lake.catalog.optimize import optimize

    if not LakePaths(args.lake).exists():
        raise LakeNotFoundError(args.lake)
    progress = RowProgress("optimize", enabled=not args.no_progress)
    try:
        summary = optimize(args.lake, force=args.force, on_rows=progress)
    except Interrupted as exc:
        progress.close()
        print(
            "lake optimize: interrupted; each table is either rewritten or as it was; "
            "run the same command again to complete it",
            file=sys.stderr,
        )
        return exc.exit_code
    finally:
        progress.close()
    merged = summary.arrays
    if merged is not None and merged.arrays_before:
        print(
            f"pixel arrays: {merged.arrays_before} small arrays merged into {merged.arrays_after}, "
            f"{merged.instances} instances, {merged.frames} frames"
            + (f" ({merged.skipped_series} series left as they were: run lake verify)" if merged.skipped_series else "")
        )
    elif merged is not None:
        print("pixel arrays: no small arrays to merge")
    for t in summary.tables:
        if t.skipped:
            print(f"{t.table}: already compact ({t.files_before} file(s))")
        else:
            print(
                f"{t.table}: {t.files_before} -> {t.files_after} file(s), {t.rows} rows, "
                f"{t.bytes_before / 1e6:.1f} -> {t.bytes_after / 1e6:.1f} MB"
            )
    print(f"run {summary.run_id} recorded in the runs table")
    return 0
