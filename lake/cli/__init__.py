"""The ``lake`` command line. Each command lives in its own module with ``register(subparsers)``.

Only this package prints and exits; the library raises :class:`lake.errors.LakeError`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from lake import __version__
from lake.errors import LakeError

#: Modules under ``lake.cli`` that define a command (keep names and options stable: tools script them).
COMMAND_MODULES = (
    "init_cmd",
    "ingest_cmd",
    "sql_cmd",
    "info_cmd",
    "demo_cmd",
    "optimize_cmd",
    "docs_cmd",
    "audit_phi_cmd",
    "verify_cmd",
    "replicate_cmd",
    "restore_cmd",
    "forget_cmd",
    "vacuum_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, built without the heavy libraries (``tests/test_startup.py``).

    A command module imports only light modules at its top; what its ``run`` needs (DuckDB, polars,
    pydicom, zarr, dask...) it imports inside ``run``, so ``lake --help`` starts in a fraction of
    a second and each command pays only for what it uses.
    """
    parser = argparse.ArgumentParser(prog="lake", description="A de-identified research imaging data lake.")
    parser.add_argument("--version", action="version", version=f"lake {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"lake.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        code = int(args.func(args) or 0)
    except LakeError as exc:
        print(f"lake {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lake {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
