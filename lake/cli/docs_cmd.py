"""``lake docs [--check] [--output FILE]``: regenerate docs/tables.md from schemas/ (in a source checkout)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "docs", help="generate docs/tables.md from the table and view schemas (in a source checkout of lake)"
    )
    p.add_argument("--output", type=Path, help="file to write (default: docs/tables.md of the checkout)")
    p.add_argument("--check", action="store_true", help="only check that the file is up to date (exit 1 if not)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lake.catalog import docs  # DuckDB and pydicom: imported when the command runs

    checkout_docs = docs.docs_path()  # raises from an installed wheel, whatever --output says
    output = args.output or checkout_docs
    if args.check:
        if docs.is_current(output):
            print(f"{output} is up to date")
            return 0
        print(f"{output} is out of date: run `lake docs`")
        return 1
    print(f"wrote {docs.write(output)}")
    return 0
