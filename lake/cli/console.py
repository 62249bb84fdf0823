"""What the command line prints besides its results: log lines, library warnings, internal errors.

Nothing here prints a value that could come from an input file. Only the ``lake`` logger prints
its (PHI-free) messages; other libraries' warnings and log records are reduced to their reason
code (:func:`lake.diagnostics.classify_record`), shown with ``-v`` only; an unexpected exception
shows its type and, with ``-v``, its stack (files, lines, functions), never its message or values.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from lake.diagnostics import classify_record

#: Exit code of an unexpected exception (EX_SOFTWARE of sysexits.h).
INTERNAL_ERROR = 70


def add_global_options(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction) -> None:
    """``-v/--verbose`` and ``-q/--quiet``, accepted before and after the command name."""
    for i, p in enumerate([parser, *sub.choices.values()]):
        # On the commands the default is SUPPRESS, so `lake -v CMD` is not reset by CMD's parser.
        default: object = False if i == 0 else argparse.SUPPRESS
        p.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=default,
            help="also print progress details of lake and, on an internal error, its stack "
            "(never messages or values from the input files)",
        )
        p.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=default,
            help="print only the summary: no progress bars, no informational lines",
        )


class _CodesOnly(logging.Handler):
    """Other libraries' records (and Python warnings) as their reason code: messages can quote files."""

    def __init__(self, command: str) -> None:
        super().__init__(logging.WARNING)
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        try:
            code = classify_record(record)
            sys.stderr.write(f"lake {self.command}: library {record.levelname.lower()} {code} (message not shown)\n")
        except Exception:  # never let a diagnostic end the command
            pass


@contextmanager
def configured_logging(command: str, verbose: bool, quiet: bool) -> Iterator[None]:
    """Set up logging for one command and undo it afterwards (``main`` may run many times in a process)."""
    lake_logger = logging.getLogger("lake")
    root = logging.getLogger()
    saved_level, saved_propagate = lake_logger.level, lake_logger.propagate
    warnings_captured = getattr(logging, "_warnings_showwarning", None) is not None
    lake_handler = logging.StreamHandler(sys.stderr)
    lake_handler.setFormatter(logging.Formatter(f"lake {command}: %(message)s"))
    lake_logger.addHandler(lake_handler)
    lake_logger.setLevel(logging.INFO if verbose else logging.ERROR if quiet else logging.WARNING)
    lake_logger.propagate = False
    # Without a handler on the root, logging.lastResort would print library warnings in full.
    library_handler: logging.Handler = _CodesOnly(command) if verbose else logging.NullHandler()
    root.addHandler(library_handler)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(warnings_captured)
        root.removeHandler(library_handler)
        lake_logger.removeHandler(lake_handler)
        lake_logger.setLevel(saved_level)
        lake_logger.propagate = saved_propagate


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, oldest first."""
    out: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return out[::-1]


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def print_stack(exc: BaseException) -> None:
    """The stack of ``exc`` (and of its causes) on stderr: files, lines, functions, exception types.

    The exception's message, arguments and the frames' locals are left out: they can hold values
    read from an input file (so are source lines, which ``-v`` users can look up by file and line).
    """
    out = sys.stderr
    for i, link in enumerate(_chain(exc)):
        if i:
            out.write("\nwhich led to:\n")
        out.write("Traceback (most recent call last; exception messages and values are not shown):\n")
        for frame in traceback.extract_tb(link.__traceback__):
            out.write(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
        out.write(f"{_type_name(link)}\n")


def report_internal_error(command: str, exc: BaseException, verbose: bool) -> int:
    """One line naming the exception's type (and, with ``verbose``, the stack); returns the exit code."""
    if verbose:
        print_stack(exc)
    hint = "" if verbose else "; run with -v for the stack"
    print(f"lake {command}: internal error ({type(exc).__name__}){hint}", file=sys.stderr)
    return INTERNAL_ERROR
