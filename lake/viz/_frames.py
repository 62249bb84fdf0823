"""Checks of the DataFrames the plots take: documented columns present, no nulls where needed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from lake.errors import ColumnError

if TYPE_CHECKING:
    import polars as pl


def require_columns(frame: pl.DataFrame, names: Iterable[str], what: str) -> None:
    """Raise :class:`ColumnError` naming the missing columns and the ones present."""
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ColumnError(
            f"{what} needs the column(s) {', '.join(missing)}; the frame has {', '.join(frame.columns) or 'none'} "
            "(rename with frame.rename({...}) or name them with the function's column arguments)"
        )


def require_values(frame: pl.DataFrame, name: str, what: str) -> None:
    """Raise :class:`ColumnError` when column ``name`` has nulls (the count, never the rows)."""
    nulls = frame[name].null_count()
    if nulls:
        raise ColumnError(
            f"{what}: {nulls} of {frame.height} rows have no {name}; filter them first "
            f"(frame.filter(pl.col({name!r}).is_not_null()))"
        )
