"""The ``lake`` command line. Each command lives in its own module with ``register(subparsers)``.

Only this package prints and exits; the library raises :class:`lake.errors.LakeError`.
Exit codes: 0 success, 1 a command's own failure (``--strict``, ``verify``, ...), 2 a
:class:`~lake.errors.LakeError` or a bad argument, 70 an internal error (an unexpected exception:
its type is printed, with ``-v`` its stack, never its message), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lake import __version__, memory
from lake.cli.common import check_lake_location, run_command
from lake.cli.console import add_global_options, configured_logging, print_stack, report_internal_error
from lake.errors import LakeError

#: Modules under ``lake.cli`` that define a command (keep names and options stable: tools script them).
COMMAND_MODULES = (
    "init_cmd",
    "ingest_cmd",
    "listen_cmd",
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
    "cohort_cmd",
    "review_cmd",
    "export_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, built without the heavy libraries (``tests/test_startup.py``).

    A command module imports only light modules at its top; what its ``run`` needs (DuckDB, polars,
    pydicom, zarr, dask...) it imports inside ``run``, so ``lake --help`` starts in a fraction of
    a second and each command pays only for what it uses.
    """
    parser = argparse.ArgumentParser(prog="lake", description="A de-identified research imaging data lake.")
    parser.add_argument("--version", action="version", version=f"lake {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"lake.cli.{name}").register(sub)
    add_global_options(parser, sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose and args.quiet:
        parser.error("choose one of -v/--verbose and -q/--quiet")
    if args.quiet and hasattr(args, "no_progress"):
        args.no_progress = True
    with configured_logging(args.command, args.verbose, args.quiet):
        try:
            check_lake_location(args)
            with memory.use(getattr(args, "memory_limit", None)):  # --memory-limit, else the environment's
                code = run_command(args)
        except LakeError as exc:  # messages are PHI-free by contract (lake.errors)
            if args.verbose:
                print_stack(exc)
            print(f"lake {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"lake {args.command}: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:  # its message or arguments may quote an input file: never printed
            return report_internal_error(args.command, exc, args.verbose)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
