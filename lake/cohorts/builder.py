"""The cohort builder: filters and longitudinal operators composed into one printable SQL query.

``lk.cohort()`` (or ``snapshot.cohort()``) returns a :class:`Cohort` bound to one snapshot, so
every result, pixel read and saved manifest of it sees the same table versions. Each method
returns a new cohort (as polars' frames do); nothing runs until a result is asked for::

    from lake.cohorts import modality, body_part
    ct = (lk.cohort()
          .filter(modality("CT"), body_part("CHEST"))
          .baseline()                          # each patient's first selected study
          .follow_ups(min_days=180, max_days=540))
    print(ct.sql())                            # the query, reusable in `lake sql`
    ct.patients(); ct.studies(); ct.series()   # polars DataFrames
    ct.save("chest-ct.cohort.json")            # a manifest pinned to the snapshot's versions

The query's steps, as CTEs: ``cohort_series`` (the series every filter selects), ``cohort_studies``
(their studies that have a StudyDate, in each patient's order: date, time, then UID),
``baseline`` (per patient, the first cohort study that matches the baseline criteria, at or after
the index date), ``time_points`` (the baseline and the later cohort studies, within the follow-up
window when one is set; ``time_point`` 1 is the baseline, ``days_from_baseline`` exact day
differences of the shifted dates, which keep every interval of a patient). Studies before the
baseline are not time points. With ``follow_ups`` a patient needs at least one follow-up; with
``min_time_points(n)`` at least ``n`` time points. A study row holds only values that later
studies cannot change (no per-patient counts: those are in ``patients()``), so a saved study-level
cohort can still be matched row by row after a ``lake forget`` (:mod:`lake.cohorts.manifest`).

A filter is SQL text, a :class:`~lake.cohorts.filters.Criterion` or a polars expression. A polars
expression is evaluated once, on the snapshot, and enters the SQL as the list of keys it selected
(so the printed query and a manifest reproduce it exactly); SQL text keeps the query short.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from lake.cohorts.filters import Criterion, Level, literal
from lake.errors import CohortError

if TYPE_CHECKING:
    import dask.array
    import polars as pl

    from lake.catalog.snapshot import Snapshot
    from lake.cohorts.manifest import Manifest
    from lake.pixels.volume import Volume

#: What a filter may be: SQL text (over the level's view), a Criterion, or a polars expression.
FilterLike = Any

#: Results a cohort gives, and what :meth:`Cohort.save` may pin.
LEVELS = ("patients", "studies", "series")

_ORDER = "StudyDate, StudyTime NULLS LAST, StudyInstanceUID"


@dataclass(frozen=True)
class _Baseline:
    criteria: tuple[Criterion, ...] = ()
    on_or_after: str | None = None  # a SQL date literal, or "index_date" (per-patient VALUES)
    index_dates: tuple[tuple[str, date], ...] = ()


@dataclass(frozen=True)
class _FollowUps:
    min_days: int
    max_days: int
    criteria: tuple[Criterion, ...] = ()


@dataclass(frozen=True)
class Cohort:
    """A cohort definition bound to a snapshot (see the module's documentation)."""

    snapshot: Snapshot
    criteria: tuple[Criterion, ...] = ()
    baseline_rule: _Baseline = field(default_factory=_Baseline)
    follow_up_rule: _FollowUps | None = None
    minimum_time_points: int = 1
    priors: bool = False

    def __repr__(self) -> str:
        return f"Cohort({len(self.criteria)} filters, versions {self.snapshot.versions})"

    # -- filters -----------------------------------------------------------------------------------
    def filter(self, *criteria: FilterLike) -> Cohort:
        """Keep series matching every criterion: Criterion objects, SQL over ``series``, or polars
        expressions over the ``series`` view."""
        return replace(self, criteria=self.criteria + tuple(self._criterion(c, Level.SERIES) for c in criteria))

    def filter_series(self, *criteria: FilterLike) -> Cohort:
        return self.filter(*criteria)

    def filter_studies(self, *criteria: FilterLike) -> Cohort:
        """Keep studies matching every criterion (SQL or polars expressions over the ``studies`` view)."""
        return replace(self, criteria=self.criteria + tuple(self._criterion(c, Level.STUDIES) for c in criteria))

    def filter_patients(self, *criteria: FilterLike) -> Cohort:
        """Keep patients matching every criterion (SQL or polars expressions over the ``patients`` view)."""
        return replace(self, criteria=self.criteria + tuple(self._criterion(c, Level.PATIENTS) for c in criteria))

    def filter_instances(self, *criteria: FilterLike) -> Cohort:
        """Keep series with an instance matching each criterion (SQL or polars over ``instances``)."""
        out = []
        for c in criteria:
            if isinstance(c, str):
                out.append(Criterion(f"SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM instances WHERE {c})"))
            else:
                out.append(self._criterion(c, Level.SERIES, table="instances"))
        return replace(self, criteria=self.criteria + tuple(out))

    # -- longitudinal operators ----------------------------------------------------------------------
    def baseline(
        self, *criteria: FilterLike, on_or_after: date | str | Mapping[str, date | str] | None = None
    ) -> Cohort:
        """Each patient's baseline: the first cohort study matching ``criteria`` (default: any), at
        or after ``on_or_after``.

        ``on_or_after`` is a date for every patient or ``{PatientID: date}``. The lake's dates are
        shifted per patient (intervals stay exact), so a calendar date means the same day for every
        patient only in a lake that retains full dates; per-patient dates read from the lake
        (e.g. a diagnosis study's StudyDate) are always right.
        """
        rule = _Baseline(tuple(self._criterion(c, Level.SERIES) for c in criteria))
        if isinstance(on_or_after, Mapping):
            dates = tuple(sorted((str(p), _as_date(d)) for p, d in on_or_after.items()))
            rule = replace(rule, on_or_after="index_date", index_dates=dates)
        elif on_or_after is not None:
            rule = replace(rule, on_or_after=literal(_as_date(on_or_after)))
        return replace(self, baseline_rule=rule)

    def follow_ups(
        self, min_days: int = 0, max_days: int | None = None, *, matching: tuple[FilterLike, ...] = ()
    ) -> Cohort:
        """Keep the later studies ``min_days`` to ``max_days`` (inclusive; None: no limit) after the
        baseline that have a selected series ``matching`` every criterion; patients without such a
        follow-up leave the cohort."""
        if min_days < 0 or (max_days is not None and max_days < min_days):
            raise CohortError(f"follow-up window {min_days}..{max_days} days: need 0 <= min_days <= max_days")
        rule = _FollowUps(int(min_days), int(max_days if max_days is not None else 1_000_000))
        rule = replace(rule, criteria=tuple(self._criterion(c, Level.SERIES) for c in matching))
        return replace(self, follow_up_rule=rule)

    def min_time_points(self, n: int) -> Cohort:
        """Keep patients with at least ``n`` time points (the baseline counts as one)."""
        if n < 1:
            raise CohortError(f"min_time_points({n}): need at least 1")
        return replace(self, minimum_time_points=int(n))

    def with_priors(self) -> Cohort:
        """Studies come one row per (study, selected modality) with the ``priors`` view's prior of the
        same modality: PriorStudyInstanceUID, PriorStudyDate, interval_days, modality_time_point."""
        return replace(self, priors=True)

    # -- the query ---------------------------------------------------------------------------------
    def sql(self, level: str = "studies") -> str:
        """The DuckDB query giving the cohort at ``level`` (patients, studies or series); it runs as
        printed in ``lake sql`` and ``lk.sql``."""
        if level not in LEVELS:
            raise CohortError(f"no cohort level {level!r}: choose one of {', '.join(LEVELS)}")
        ctes = ",\n".join(f"{name} AS (\n{body}\n)" for name, body in self._ctes())
        return f"WITH {ctes}\n{_SELECT[level](self.priors)}"

    def _ctes(self) -> list[tuple[str, str]]:
        where = "\n  AND ".join(c.on_series() for c in self.criteria) or "true"
        b, f = self.baseline_rule, self.follow_up_rule
        ctes = [
            ("cohort_series", f"SELECT * FROM series\nWHERE {where}"),
            (
                "cohort_studies",
                "SELECT st.PatientID, st.StudyInstanceUID, st.StudyDate, st.StudyTime, st.StudyDescription,\n"
                "  st.PatientAge, st.PatientSex, se.modalities, se.series_count,\n"
                f"  row_number() OVER (PARTITION BY st.PatientID ORDER BY {_qualified('st', _ORDER)}) AS study_order\n"
                "FROM studies st JOIN (\n"
                "  SELECT StudyInstanceUID, list_sort(list_distinct(list(Modality))) AS modalities,\n"
                "    count(*)::BIGINT AS series_count\n"
                "  FROM cohort_series GROUP BY StudyInstanceUID\n"
                ") se USING (StudyInstanceUID)\nWHERE st.StudyDate IS NOT NULL",
            ),
        ]
        conditions = [c.on_studies("cohort_series") for c in b.criteria]
        source = "cohort_studies"
        if b.on_or_after == "index_date":
            rows = ", ".join(f"({literal(p)}, {literal(d)})" for p, d in b.index_dates) or "(NULL, NULL)"
            ctes.append(("index_dates", f"SELECT * FROM (VALUES {rows}) v(PatientID, index_date)"))
            source = "cohort_studies JOIN index_dates USING (PatientID)"
            conditions.append("StudyDate >= index_date")
        elif b.on_or_after is not None:
            conditions.append(f"StudyDate >= {b.on_or_after}")
        ctes.append(
            (
                "baseline",
                "SELECT PatientID, StudyInstanceUID AS BaselineStudyInstanceUID, StudyDate AS BaselineStudyDate,\n"
                f"  study_order AS baseline_order\nFROM {source}\nWHERE {' AND '.join(conditions) or 'true'}\n"
                "QUALIFY row_number() OVER (PARTITION BY PatientID ORDER BY study_order) = 1",
            )
        )
        window = ""
        needed = self.minimum_time_points
        if f is not None:
            extra = "".join(f" AND {c.on_studies('cohort_series')}" for c in f.criteria)
            window = (
                "\n  AND (c.study_order = b.baseline_order OR (date_diff('day', b.BaselineStudyDate, c.StudyDate) "
                f"BETWEEN {f.min_days} AND {f.max_days}{extra}))"
            )
            needed = max(needed, 2)
        ctes.append(
            (
                "time_points_all",
                "SELECT c.*, b.BaselineStudyInstanceUID, b.BaselineStudyDate,\n"
                "  date_diff('day', b.BaselineStudyDate, c.StudyDate) AS days_from_baseline,\n"
                "  c.study_order = b.baseline_order AS is_baseline\n"
                "FROM cohort_studies c JOIN baseline b USING (PatientID)\n"
                f"WHERE c.study_order >= b.baseline_order{window}",
            )
        )
        ctes.append(
            (
                "time_points",
                "SELECT * EXCLUDE (study_order),\n"
                "  row_number() OVER (PARTITION BY PatientID ORDER BY study_order) AS time_point,\n"
                "  count(*) OVER (PARTITION BY PatientID) AS time_points\n"
                f"FROM time_points_all\nQUALIFY count(*) OVER (PARTITION BY PatientID) >= {needed}",
            )
        )
        return ctes

    # -- results -----------------------------------------------------------------------------------
    def patients(self) -> pl.DataFrame:
        """One row per patient: baseline, last time point, number of time points, follow-up days."""
        return self.snapshot.sql(self.sql("patients"))

    def studies(self) -> pl.DataFrame:
        """One row per time point (per study and modality with :meth:`with_priors`)."""
        return self.snapshot.sql(self.sql("studies"))

    def series(self) -> pl.DataFrame:
        """The selected series of every time point, with the ``series`` view's columns."""
        return self.snapshot.sql(self.sql("series"))

    def arrays(self) -> Iterator[tuple[dict[str, Any], dask.array.Array]]:
        """(series row, lazy dask array of its stored values) for each selected series with pixels."""
        for row in self.series().filter(_stored()).to_dicts():
            yield row, self.snapshot.series_array(str(row["SeriesInstanceUID"]))

    def volumes(self, strict: bool = False) -> Iterator[tuple[dict[str, Any], Volume]]:
        """(series row, :class:`~lake.pixels.volume.Volume`) for each selected series that forms a
        regular volume (the ``series`` view's ``is_volume``)."""
        import polars as pl

        for row in self.series().filter(_stored() & pl.col("is_volume").fill_null(False)).to_dicts():
            yield row, self.snapshot.volume(str(row["SeriesInstanceUID"]), strict=strict)

    def save(self, path: str | os.PathLike[str], level: str = "studies", force: bool = False) -> Manifest:
        """Write a manifest (JSON) pinning the cohort at ``level`` to the snapshot's table versions;
        see :mod:`lake.cohorts.manifest`."""
        from lake.cohorts.manifest import save_query

        return save_query(self.snapshot, self.sql(level), path, force=force)

    # -- helpers -----------------------------------------------------------------------------------
    def _criterion(self, item: FilterLike, level: Level, table: str | None = None) -> Criterion:
        if isinstance(item, Criterion):
            return item
        if isinstance(item, str):
            return Criterion(item, level)
        import polars as pl

        if not isinstance(item, pl.Expr):
            raise CohortError(
                f"a filter is SQL text, a lake.cohorts Criterion or a polars expression, not {type(item).__name__}"
            )
        key = "SeriesInstanceUID" if table == "instances" else level.key
        frame = self.snapshot.table(table or level.value).filter(item).select(key).unique().collect()
        keys = sorted(str(k) for k in frame[key].drop_nulls().to_list())
        listed = ", ".join(literal(k) for k in keys)
        return Criterion(f"{key} IN ({listed})" if keys else "false", Level.SERIES if table else level)


def _stored() -> pl.Expr:
    import polars as pl

    return pl.col("stored_instance_count").fill_null(0) > 0


def _as_date(value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise CohortError(f"{value!r} is not a date: give a datetime.date or 'YYYY-MM-DD'") from None


def _qualified(alias: str, order: str) -> str:
    return ", ".join(f"{alias}.{part.strip()}" for part in order.split(","))


def _select_studies(priors: bool) -> str:
    columns = (
        "t.PatientID, t.StudyInstanceUID, t.StudyDate, t.StudyTime, t.StudyDescription, t.PatientAge, "
        "t.PatientSex, t.modalities, t.series_count, t.time_point, t.days_from_baseline, "
        "t.is_baseline, t.BaselineStudyInstanceUID, t.BaselineStudyDate"
    )
    if not priors:
        return f"SELECT {columns}\nFROM time_points t\nORDER BY t.PatientID, t.time_point"
    return (
        f"SELECT {columns}, p.Modality, p.BodyPartExamined, p.PriorStudyInstanceUID, p.PriorStudyDate,\n"
        "  p.interval_days, p.time_point AS modality_time_point\n"
        "FROM time_points t JOIN priors p\n"
        "  ON p.StudyInstanceUID = t.StudyInstanceUID AND list_contains(t.modalities, p.Modality)\n"
        "ORDER BY t.PatientID, t.time_point, p.Modality"
    )


def _select_series(priors: bool) -> str:
    return (
        "SELECT s.*, t.time_point, t.days_from_baseline, t.is_baseline, t.BaselineStudyInstanceUID\n"
        "FROM cohort_series s JOIN time_points t USING (StudyInstanceUID)\n"
        "ORDER BY s.PatientID, t.time_point, s.SeriesNumber NULLS LAST, s.SeriesInstanceUID"
    )


def _select_patients(priors: bool) -> str:
    return (
        "SELECT PatientID, any_value(PatientSex) AS PatientSex,\n"
        "  any_value(BaselineStudyInstanceUID) AS BaselineStudyInstanceUID,\n"
        "  any_value(BaselineStudyDate) AS BaselineStudyDate, max(StudyDate) AS last_study_date,\n"
        "  count(*) AS time_points, max(days_from_baseline) AS follow_up_days,\n"
        "  list(days_from_baseline ORDER BY time_point) AS days_from_baseline\n"
        "FROM time_points\nGROUP BY PatientID\nORDER BY PatientID"
    )


_SELECT = {"patients": _select_patients, "studies": _select_studies, "series": _select_series}
