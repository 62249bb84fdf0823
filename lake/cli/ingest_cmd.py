"""``lake ingest SOURCE... --lake LAKE [--key-file KEY] [--workers N] [--strict]``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from lake.cli.common import FileProgress, add_key_option, add_lake_option

if TYPE_CHECKING:
    from lake.ingest import IngestSummary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="de-identify and add DICOM files, folders or zips to a lake")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="folder (recursive), file or .zip")
    add_lake_option(p)
    add_key_option(p)
    p.add_argument(
        "--workers",
        type=int,
        default=max(1, min(os.cpu_count() or 1, 8)),
        help="worker processes (default: number of cores, at most 8)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 if any file was rejected")
    p.add_argument(
        "--recipe",
        metavar="FILE",
        help="site rules in the deid recipe format applied on top of the profile (stricter only; see lake.deid.recipe)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--file-timeout", type=float, default=300.0, metavar="S", help="seconds per file before it is rejected"
    )
    p.add_argument("--worker-memory-mb", type=int, default=4096, metavar="MB", help="memory a worker may add per file")
    p.add_argument("--batch-size", type=int, default=500, metavar="N", help="instances per commit")
    p.set_defaults(func=run)


def print_summary(summary: IngestSummary) -> None:
    rate = summary.seen / summary.seconds if summary.seconds else 0.0
    mb = summary.bytes_read / 1e6
    print(
        f"seen {summary.seen}, ingested {summary.ingested}, duplicates {summary.duplicates}, "
        f"rejected {summary.rejected} in {summary.seconds:.1f} s ({rate:.1f} files/s, "
        f"{mb / summary.seconds if summary.seconds else 0:.1f} MB/s); run {summary.run_id}"
    )
    if summary.pixel_status:
        print("pixels: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.pixel_status.items())))
    if summary.reject_reasons:
        print("rejected: " + ", ".join(f"{k} {v}" for k, v in summary.reject_reasons.most_common()))


def run(args: argparse.Namespace) -> int:
    from lake.ingest import ingest

    progress = FileProgress("ingest", enabled=not args.no_progress)
    try:
        summary = ingest(
            args.lake,
            args.sources,
            key_file=args.key_file,
            workers=args.workers,
            on_file=progress,
            on_message=lambda m: print(m, file=sys.stderr),
            recipe=args.recipe,
            file_timeout=args.file_timeout or None,
            worker_memory_bytes=args.worker_memory_mb * 1024**2 if args.worker_memory_mb else None,
            batch_size=args.batch_size,
        )
    finally:
        progress.close()
    print_summary(summary)
    return 1 if args.strict and summary.rejected else 0
