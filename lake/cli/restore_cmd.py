"""``lake restore --lake LAKE --from REPLICA``: verify the replica, then make the lake equal to it."""

from __future__ import annotations

import argparse

from lake.cli.common import add_lake_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore", help="bring a damaged or lost lake back from a replica (verified first)")
    add_lake_option(p)
    p.add_argument("--from", dest="source", required=True, metavar="REPLICA", help="a replica made by replicate")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lake.maintenance.replicate import restore

    s = restore(args.lake, args.source)
    print(f"restored {s.copied} files, {s.unchanged} were intact, removed {s.deleted}; run {s.run_id}")
    return 0
