"""``lake cohort save --lake LAKE --sql "SELECT ..." --out MANIFEST`` and ``lake cohort show MANIFEST``.

``save`` runs one read-only query (the sandbox of ``lake sql``) with a ``PatientID`` column and
writes its manifest, pinned to the Delta versions of the tables it reads; ``show`` re-runs a
manifest against exactly those versions, checks the rows against its content hash and prints them
(withdrawn patients left out, and counted on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lake.cli.common import DEFAULT_MAX_ROWS, add_key_option, add_lake_option, add_memory_option, print_frame
from lake.cli.sql_cmd import check_out_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cohort",
        help="save a query as a cohort manifest pinned to table versions, and show it again",
        description="Save one read-only query (with a PatientID column) as a reproducible cohort manifest, "
        "or re-run a manifest against the table versions it pins.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    save = actions.add_parser(
        "save",
        help="run a query and write its manifest",
        description="Run one read-only query over the lake's tables and views and write a JSON manifest: the "
        "query, the Delta version of every table it reads, the lake id, the key fingerprint, counts and the "
        "content hash of the result.",
    )
    add_lake_option(save)
    add_memory_option(save)
    save.add_argument("--sql", required=True, metavar="SQL", help="one query with a PatientID column (quote it)")
    save.add_argument(
        "--out", required=True, metavar="MANIFEST", type=Path, help="the manifest file to write (outside every lake)"
    )
    save.add_argument("--force", action="store_true", help="replace MANIFEST if it exists (default: refuse)")
    save.set_defaults(func=run_save)
    show = actions.add_parser(
        "show",
        help="re-run a manifest at its pinned versions and print the rows",
        description="Re-run a saved cohort against the table versions it pins, check its content hash, and print "
        "its rows; patients withdrawn since it was saved are left out and counted on stderr.",
    )
    show.add_argument("manifest", metavar="MANIFEST", type=Path, help="a manifest written by `lake cohort save`")
    add_lake_option(show, required=False)
    add_memory_option(show)
    show.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="how rows are printed (default: table)"
    )
    show.add_argument(
        "--max-rows",
        type=int,
        default=DEFAULT_MAX_ROWS,
        metavar="N",
        help=f"table format: print the first N rows (default {DEFAULT_MAX_ROWS}, 0: all)",
    )
    add_key_option(show)
    show.set_defaults(func=run_show)
    for action in (save, show):  # -v/-q after the action too, as after every command
        action.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="as lake -v")
        action.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="as lake -q")


def run_save(args: argparse.Namespace) -> int:
    import lake
    from lake.cohorts.manifest import save_query

    lk = lake.open(args.lake)
    target = check_out_path(args.out, lk.local_root, args.force)
    with lk.snapshot() as snapshot:
        manifest = save_query(snapshot, args.sql, target, force=args.force)
    counts = ", ".join(f"{k} {v}" for k, v in manifest.counts.items())
    pinned = ", ".join(f"{t}@{v}" for t, v in manifest.versions.items()) or "no table"
    print(f"saved cohort ({counts}) pinned to {pinned} in {target}; content hash {manifest.content_hash[:16]}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from lake.cohorts.manifest import load_cohort

    loaded = load_cohort(args.manifest, lake=args.lake, key_file=args.key_file)
    note = loaded.note()
    if note:
        print(f"lake cohort: {note}", file=sys.stderr)
    print_frame(loaded.frame, args.format, args.max_rows)
    return 0
