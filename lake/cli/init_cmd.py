"""``lake init LAKE [--key-file KEY]``."""

from __future__ import annotations

import argparse

import lake
from lake.cli.common import add_key_option
from lake.deid.policy import PixelPolicy
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, ProfileOption


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a lake and its secret key (kept outside the lake)")
    p.add_argument("lake", metavar="LAKE")
    add_key_option(p)
    p.add_argument(
        "--option",
        action="append",
        dest="options",
        choices=[o.value for o in ProfileOption],
        metavar="OPTION",
        help="PS3.15 profile option (repeatable); default: the research profile "
        + ", ".join(o.value for o in DEFAULT_RESEARCH_OPTIONS),
    )
    p.add_argument(
        "--date-offset-days",
        nargs=2,
        type=int,
        metavar=("MIN", "MAX"),
        default=(30, 1095),
        help="range of the per-patient backwards date shift in days (default 30 1095)",
    )
    p.add_argument(
        "--burned-in-policy", choices=[x.value for x in PixelPolicy], default=PixelPolicy.MASK_OR_QUARANTINE.value
    )
    p.add_argument(
        "--keep-crosswalk", action="store_true", help="record original to pseudonym IDs in the vault beside the key"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lk = lake.init(
        args.lake,
        key_file=args.key_file,
        options=args.options or DEFAULT_RESEARCH_OPTIONS,
        date_offset_days=tuple(args.date_offset_days),
        burned_in_policy=args.burned_in_policy,
        keep_crosswalk=args.keep_crosswalk,
    )
    print(f"created lake {lk.root}")
    print(f"key: {lk.key_path} (fingerprint {lk.config.key_fingerprint}); keep it safe and out of the lake")
    return 0
