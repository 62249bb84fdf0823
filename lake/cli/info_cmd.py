"""``lake info --lake LAKE``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import lake
from lake.cli.common import add_lake_option, print_mapping

if TYPE_CHECKING:
    from lake.core import Lake


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info", help="counts of patients, studies, series, instances, rejects, bytes, and the lake's settings"
    )
    add_lake_option(p)
    p.set_defaults(func=run)


def describe(lk: Lake) -> dict[str, Any]:
    """The lake's counts and its effective settings, as recorded in lake.json (what every ingest applies)."""
    info = lk.info()
    deid = lk.config.deid
    info["deid_profile"] = deid.profile
    if deid.profile == "pass-through":  # values kept as they are: no options, no date shift
        info["deid_options"] = "(none: already de-identified data, kept as it is and audited for PHI)"
        info["date_offset_days"] = "none (dates kept as they are)"
    else:
        info["deid_options"] = ", ".join(info["deid_options"]) or "(none: the Basic Profile alone)"
        info["date_offset_days"] = "{} to {} (per-patient backwards shift)".format(*deid.date_offset_days)
    info["burned_in_policy"] = deid.burned_in_policy
    info["keep_crosswalk"] = "yes" if deid.keep_crosswalk else "no"
    info["patient_identity"] = lk.config.identity.describe()
    info["on_update"] = f"{lk.config.corrections.on_update} (a known SOP Instance UID with other content)"
    return info


def run(args: argparse.Namespace) -> int:
    print_mapping(describe(lake.open(args.lake)))
    return 0
