"""``lake verify --lake LAKE``: exit 0 when every checksum and every row/array pair checks, else 1."""

from __future__ import annotations

import argparse
import sys

from lake.cli.common import FileProgress, add_lake_option, add_memory_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="recompute the checksums of every table file and pixel shard and check rows against arrays",
    )
    add_lake_option(p)
    add_memory_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lake.maintenance.verify import verify

    progress = FileProgress("verify", enabled=not args.no_progress, unit=" instances")
    try:
        report = verify(args.lake, on_row=progress)
    finally:
        progress.close()
    for problem in report.problems:
        print(problem, file=sys.stderr)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
    print(f"{'ok' if report.ok else f'FAILED: {len(report.problems)} problems'} ({counts}); run {report.run_id}")
    return 0 if report.ok else 1
