"""``lake vacuum --lake LAKE [--retention-hours H]``: remove orphan arrays and old table files."""

from __future__ import annotations

import argparse

from lake.cli.common import add_lake_option, add_memory_option
from lake.maintenance import DEFAULT_RETENTION_HOURS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vacuum", help="remove uncommitted pixel arrays and table files no snapshot needs")
    from lake.cli.argtypes import non_negative_int

    add_lake_option(p)
    add_memory_option(p)
    p.add_argument(
        "--retention-hours",
        type=non_negative_int,
        metavar="H",
        default=DEFAULT_RETENTION_HOURS,
        help=f"keep old table files this long for time travel (default {DEFAULT_RETENTION_HOURS})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lake.maintenance.vacuum import vacuum

    s = vacuum(args.lake, args.retention_hours)
    files = sum(s.table_files.values())
    print(f"removed {s.orphan_arrays} orphan pixel arrays and {files} old table files; run {s.run_id}")
    return 0
