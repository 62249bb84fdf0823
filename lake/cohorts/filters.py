"""Criteria a cohort composes: SQL predicates on the ``patients``, ``studies`` or ``series`` view.

A :class:`Criterion` is a level and a DuckDB predicate over that level's view (its columns are
listed in ``docs/tables.md``). The helpers build the common ones with quoted literals::

    modality("CT")                      # series: Modality IN ('CT')
    body_part("CHEST", "THORAX")        # series: upper(BodyPartExamined) IN (...)
    description("%axial%")              # series: SeriesDescription ILIKE ...
    manufacturer("%siemens%")           # series: Manufacturer ILIKE ...
    contrast()                          # series with an instance that records contrast
    acquisition(KVP=(100, 140), SliceThickness=(None, 2.5))  # instance attributes, inclusive ranges
    sql("PatientSex = 'F'", "patients")

Instance-level attributes (acquisition parameters, contrast) select the series that have at least
one matching instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from lake.errors import CohortError


class Level(StrEnum):
    """Where a criterion applies: the view its predicate reads."""

    PATIENTS = "patients"
    STUDIES = "studies"
    SERIES = "series"

    @property
    def key(self) -> str:
        return {"patients": "PatientID", "studies": "StudyInstanceUID", "series": "SeriesInstanceUID"}[self.value]


@dataclass(frozen=True)
class Criterion:
    """A predicate over the view of ``level`` (``Level`` or its name)."""

    predicate: str
    level: Level = Level.SERIES

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", _level(self.level))
        if not self.predicate.strip():
            raise CohortError("an empty criterion: give a predicate such as \"Modality = 'CT'\"")

    def __and__(self, other: Criterion) -> Criterion:
        if other.level is not self.level:
            return Criterion(f"({self.on_series()}) AND ({other.on_series()})")
        return Criterion(f"({self.predicate}) AND ({other.predicate})", self.level)

    def __or__(self, other: Criterion) -> Criterion:
        if other.level is not self.level:
            return Criterion(f"({self.on_series()}) OR ({other.on_series()})")
        return Criterion(f"({self.predicate}) OR ({other.predicate})", self.level)

    def __invert__(self) -> Criterion:
        return Criterion(f"NOT coalesce(({self.predicate}), false)", self.level)

    def on_series(self) -> str:
        """The predicate as it applies to a row of the ``series`` view (or any relation with the
        same key columns)."""
        if self.level is Level.SERIES:
            return f"({self.predicate})"
        key = self.level.key
        return f"{key} IN (SELECT {key} FROM {self.level.value} WHERE {self.predicate})"

    def on_studies(self, series_source: str = "series") -> str:
        """The predicate as it applies to a study: for a series criterion, the study has a row of
        ``series_source`` (the cohort's selected series) that matches."""
        if self.level is Level.SERIES:
            return f"StudyInstanceUID IN (SELECT StudyInstanceUID FROM {series_source} WHERE {self.predicate})"
        return self.on_series()


def _level(level: Level | str) -> Level:
    try:
        return Level(level)
    except ValueError:
        choices = ", ".join(v.value for v in Level)
        raise CohortError(f"no cohort level {level!r}: choose one of {choices}") from None


def literal(value: object) -> str:
    """A DuckDB literal for a string, number, bool, date or None."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise CohortError(f"cannot write a {type(value).__name__} as a SQL literal: give a string, number or date")


def _in(column: str, values: tuple[str, ...], fold: bool = False) -> str:
    if not values:
        raise CohortError(f"give at least one value for {column}")
    listed = ", ".join(literal(v.upper() if fold else v) for v in values)
    return f"{'upper(' + column + ')' if fold else column} IN ({listed})"


def sql(predicate: str, level: Level | str = Level.SERIES) -> Criterion:
    """A predicate written in SQL over the view of ``level`` (default: series)."""
    return Criterion(predicate, _level(level))


def modality(*values: str) -> Criterion:
    """Series of any of the modalities (``CT``, ``MR``, ...)."""
    return Criterion(_in("Modality", values))


def body_part(*values: str) -> Criterion:
    """Series whose BodyPartExamined is any of ``values`` (ignoring case)."""
    return Criterion(_in("BodyPartExamined", values, fold=True))


def description(pattern: str, level: Level | str = Level.SERIES) -> Criterion:
    """Series (or studies) whose description matches the ILIKE ``pattern`` (``%`` any text)."""
    lvl = _level(level)
    if lvl is Level.PATIENTS:
        raise CohortError("patients have no description: use level 'series' or 'studies'")
    column = "SeriesDescription" if lvl is Level.SERIES else "StudyDescription"
    return Criterion(f"{column} ILIKE {literal(pattern)}", lvl)


def manufacturer(pattern: str) -> Criterion:
    """Series whose device manufacturer matches the ILIKE ``pattern``."""
    return Criterion(f"Manufacturer ILIKE {literal(pattern)}")


def instances(predicate: str) -> Criterion:
    """Series with at least one instance matching ``predicate`` (over the ``instances`` table)."""
    return Criterion(f"SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM instances WHERE {predicate})")


def contrast(used: bool = True) -> Criterion:
    """Series with (``used``) or without any instance that records contrast (``contrast_used``)."""
    found = "SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM instances WHERE contrast_used)"
    return Criterion(found if used else f"NOT ({found})")


def acquisition(**ranges: object) -> Criterion:
    """Series with an instance whose attributes match: ``name=value`` (equal) or ``name=(low, high)``
    (inclusive, None for an open end), e.g. ``acquisition(KVP=(100, 140), EchoTime=(None, 10))``.

    Names are columns of the ``instances`` table; raises :class:`CohortError` for another name.
    """
    from lake.headers.schema import load_table_schema

    if not ranges:
        raise CohortError("give at least one attribute, e.g. acquisition(KVP=(100, 140))")
    columns = {c.name for c in load_table_schema("instances").columns}
    parts = []
    for name, value in sorted(ranges.items()):
        if name not in columns:
            raise CohortError(f"{name} is not a column of the instances table: see docs/tables.md")
        if isinstance(value, tuple):
            if len(value) != 2:
                raise CohortError(f"{name}: give (low, high), not {len(value)} values")
            low, high = value
            if low is not None:
                parts.append(f"{name} >= {literal(low)}")
            if high is not None:
                parts.append(f"{name} <= {literal(high)}")
        else:
            parts.append(f"{name} = {literal(value)}")
    if not parts:
        raise CohortError("acquisition(...) with only open ranges selects nothing in particular: give a bound")
    return instances(" AND ".join(parts))
