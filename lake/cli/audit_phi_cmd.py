"""``lake audit-phi --lake LAKE [--identifiers FILE] [--json]``: exit 1 on any hit, 0 when the lake is clean."""

from __future__ import annotations

import argparse
import json
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
        help="plain UTF-8 text, one identifier per line (names, IDs, accession numbers...), matched "
        "case-insensitively; identifiers too short or too common to mean a person are listed as not "
        "searched (default: none, patterns only)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the report as one JSON object (hits with their places, identifiers not searched) "
        "instead of lines (default: lines)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lake.audit import audit, read_identifiers

    root = Path(args.lake)
    if not LakePaths(root).exists():
        raise LakeNotFoundError(root)
    identifiers = []
    if args.identifiers:
        try:
            identifiers = read_identifiers(Path(args.identifiers))
        except OSError as exc:
            raise SourceError(f"cannot read identifiers file {args.identifiers}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise SourceError(f"identifiers file {args.identifiers} is not UTF-8 text: save it as UTF-8") from exc
    report = audit(root, identifiers)
    # Only the identifier itself (the auditor's own input) or a pattern's name is printed, never a value.
    if args.json:
        print(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
        return 0 if report.clean else 1
    for hit in report.hits:
        print(hit.describe())
    for skipped in report.not_searched:
        line = f" (line {skipped.line})" if skipped.line is not None else ""
        print(f"not searched: {skipped.reason} ({skipped.detail}): {skipped.identifier}{line}")
    checked = f"{report.searched} identifiers and {len(report.patterns)} patterns checked"
    if report.not_searched:
        checked += f", {len(report.not_searched)} identifiers not searched"
    if report.hits:
        files = len({h.path for h in report.hits})
        print(f"PHI audit: {len(report.hits)} hit(s) in {files} file(s) ({checked})")
        return 1
    print(f"PHI audit: clean ({checked})")
    return 0
