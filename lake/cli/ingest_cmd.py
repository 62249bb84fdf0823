"""``lake ingest SOURCE... --lake LAKE [--key-file KEY] [--workers N] [--strict]``."""

from __future__ import annotations

import argparse
import os
import sys

from lake.cli.common import FileProgress, add_key_option, add_lake_option
from lake.ingest import IngestSummary, ingest


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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    progress = FileProgress("ingest", enabled=not args.no_progress)
    try:
        summary = ingest(
            args.lake,
            args.sources,
            key_file=args.key_file,
            workers=args.workers,
            on_file=progress,
            on_message=lambda m: print(m, file=sys.stderr),
        )
    finally:
        progress.close()
    print_summary(summary)
    return 1 if args.strict and summary.rejected else 0
