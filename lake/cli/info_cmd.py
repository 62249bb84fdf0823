"""``lake info --lake LAKE``."""

from __future__ import annotations

import argparse

import lake
from lake.cli.common import add_lake_option, print_mapping


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info", help="counts of patients, studies, series, instances, rejects, bytes, and the lake's settings"
    )
    add_lake_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lk = lake.open(args.lake)
    info = lk.info()
    deid = lk.config.deid
    # The effective settings, as recorded in lake.json (what every ingest applies).
    info["deid_options"] = ", ".join(info["deid_options"]) or "(none: the Basic Profile alone)"
    info["date_offset_days"] = "{} to {} (per-patient backwards shift)".format(*deid.date_offset_days)
    info["burned_in_policy"] = deid.burned_in_policy
    info["keep_crosswalk"] = "yes" if deid.keep_crosswalk else "no"
    print_mapping(info)
    return 0
