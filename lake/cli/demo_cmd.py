"""``lake demo [--lake LAKE]``: build the demo lake from pip-shipped DICOM files and show it."""

from __future__ import annotations

import argparse
import os
import sys

import lake
from lake.cli.common import FileProgress, add_key_option, print_frame, print_mapping
from lake.cli.info_cmd import describe
from lake.cli.ingest_cmd import print_summary
from lake.errors import SourceError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="build a demo lake from the DICOM files pydicom and pydicom-data ship")
    from lake.cli.argtypes import positive_int

    p.add_argument("--lake", default="demo-lake", metavar="LAKE", help="where to build it (default ./demo-lake)")
    add_key_option(p)
    p.add_argument(
        "--workers",
        type=positive_int,
        default=max(1, min(os.cpu_count() or 1, 8)),
        metavar="N",
        help="worker processes, at least 1 (default: the number of cores, at most 8)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: a bar on stderr)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lake.demo import DEMO_QUERY, demo_sources
    from lake.ingest import ingest
    from lake.ingest.run import vault_log_path

    sources = demo_sources()
    if not sources:
        raise SourceError("no demo files found: install pydicom and pydicom-data (pip install -e .)")
    if not args.quiet:
        print("demo sources: " + ", ".join(str(s) for s in sources))
    progress = FileProgress("ingest", enabled=not args.no_progress)
    try:
        summary = ingest(
            args.lake,
            sources,
            key_file=args.key_file,
            workers=args.workers,
            on_file=progress,
            on_message=None if args.quiet else lambda m: print(m, file=sys.stderr),
        )
    finally:
        progress.close()
    lk = lake.open(args.lake, key_file=args.key_file)
    print_summary(summary, vault_log_path(lk.key_path, summary.run_id))
    if args.quiet:
        return 0
    print(f"\nlake {lk.root}:")
    print_mapping(describe(lk))
    print(f"\nexample query:\n{DEMO_QUERY}\n")
    print_frame(lk.sql(DEMO_QUERY), "table")
    print(f'\nnext: lake sql --lake {args.lake} "SELECT * FROM studies LIMIT 5"')
    return 0
