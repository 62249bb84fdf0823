"""``lake info --lake LAKE``."""

from __future__ import annotations

import argparse

import lake
from lake.cli.common import add_lake_option, print_mapping


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="counts of patients, studies, series, instances, rejects, bytes")
    add_lake_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    info = lake.open(args.lake).info()
    info["deid_options"] = ", ".join(info["deid_options"])
    print_mapping(info)
    return 0
