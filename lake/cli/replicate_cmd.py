"""``lake replicate --lake LAKE --to DEST [--checksum]``: copy a consistent snapshot, incrementally."""

from __future__ import annotations

import argparse

from lake.cli.common import FileProgress, add_lake_option, add_memory_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replicate", help="copy a consistent snapshot of the lake to a folder (incremental)")
    add_lake_option(p)
    add_memory_option(p)
    p.add_argument("--to", required=True, metavar="DEST", help="the replica folder (created if missing)")
    p.add_argument("--checksum", action="store_true", help="compare files by SHA-256, not size and time")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lake.maintenance.replicate import replicate

    progress = FileProgress("replicate", enabled=not args.no_progress)
    try:
        s = replicate(args.lake, args.to, checksum=args.checksum, on_file=progress)
    finally:
        progress.close()
    print(
        f"copied {s.copied} files ({s.bytes_copied / 1e6:.1f} MB), unchanged {s.unchanged}, "
        f"deleted {s.deleted}; run {s.run_id}"
    )
    return 0
