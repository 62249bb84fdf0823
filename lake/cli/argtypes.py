"""Argument types that refuse a bad value while parsing, before a command writes anything."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lake.memory import MemoryBudget


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole number' if kind is int else 'number'}") from None


def positive_int(text: str) -> int:
    """A whole number of at least 1 (workers, batch sizes)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number of at least 0 (0 usually meaning "no limit": the help says so)."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A number of at least 0 (0 usually meaning "no limit": the help says so)."""
    value = _number(text, float)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def port_number(text: str) -> int:
    """A TCP port, 1 to 65535."""
    value = int(_number(text, int))
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text}")
    return value


def readable_file(text: str) -> str:
    """The path of an existing file (not a folder)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    return text


def memory_limit(text: str) -> MemoryBudget:
    """A memory budget: a size with a unit (``4GB``, ``512MB``, ``1.5GiB``) or ``none``."""
    from lake.memory import UNBOUNDED, MemoryBudget, MemoryLimitError, parse_size

    if text.strip().lower() == UNBOUNDED:
        return MemoryBudget(None)
    try:
        return MemoryBudget(parse_size(text))
    except MemoryLimitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
