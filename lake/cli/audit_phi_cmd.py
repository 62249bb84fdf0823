"""``lake audit-phi --lake LAKE [--identifiers FILE]``: exit 1 on any hit, 0 when the lake is clean."""

from __future__ import annotations

import argparse
from pathlib import Path

from lake.cli.common import add_lake_option
from lake.config import LakePaths
from lake.errors import LakeNotFoundError, SourceError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit-phi",
        help="decode every file of a lake and look for known identifiers and PHI patterns (exit 1 on a hit)",
    )
    add_lake_option(p)
    p.add_argument(
        "--identifiers",
        metavar="FILE",
        help="plain text, one identifier per line (names, IDs, accession numbers...), matched case-insensitively",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lake.audit import PHI_PATTERNS, audit_lake, read_identifiers

    root = Path(args.lake)
    if not LakePaths(root).exists():
        raise LakeNotFoundError(root)
    identifiers: list[str] = []
    if args.identifiers:
        try:
            identifiers = read_identifiers(Path(args.identifiers))
        except OSError as exc:
            raise SourceError(f"cannot read identifiers file {args.identifiers}: {exc.strerror}") from exc
    hits = audit_lake(root, identifiers)
    # Only the identifier itself (or the pattern's name) is printed, never the text around it.
    for hit in hits:
        print(f"{hit.path}: {hit.where}: {hit.identifier}")
    if hits:
        print(f"PHI audit: {len(hits)} hit(s) in {len({h.path for h in hits})} file(s)")
        return 1
    print(f"PHI audit: clean ({len(identifiers)} identifiers and {len(PHI_PATTERNS)} patterns checked)")
    return 0
