"""``lake docs [--check] [--output FILE]``: regenerate docs/tables.md from schemas/."""

from __future__ import annotations

import argparse
from pathlib import Path

from lake.catalog import docs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("docs", help="generate docs/tables.md from the table and view schemas")
    p.add_argument(
        "--output", type=Path, default=docs.DOCS_PATH, metavar="FILE", help="file to write (default: docs/tables.md)"
    )
    p.add_argument("--check", action="store_true", help="only check that the file is up to date (exit 1 if not)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.check:
        if docs.is_current(args.output):
            print(f"{args.output} is up to date")
            return 0
        print(f"{args.output} is out of date: run `lake docs`")
        return 1
    print(f"wrote {docs.write(args.output)}")
    return 0
