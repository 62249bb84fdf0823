"""Plots of a cohort's time points: a swimmer plot per patient and a histogram of intervals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lake.viz._frames import require_columns, require_values

if TYPE_CHECKING:
    import polars as pl

#: Marker of each common modality; others take the unused markers in turn.
MODALITY_MARKERS = {"CT": "o", "MR": "s", "CR": "^", "DX": "v", "US": "D", "PT": "P", "NM": "X", "MG": "*", "XA": "h"}
_SPARE_MARKERS = ("p", "<", ">", "d", "8", "H", "1", "2")
#: Average days per month, for the months axis of the interval histogram.
DAYS_PER_MONTH = 365.25 / 12
#: Patients labelled by pseudonym on the swimmer plot's y axis when there are at most this many.
MAX_LABELLED_PATIENTS = 40


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def _months(days: Any) -> Any:
    return np.asarray(days, dtype=float) / DAYS_PER_MONTH


def _days(months: Any) -> Any:
    return np.asarray(months, dtype=float) * DAYS_PER_MONTH


def modality_markers(modalities: Sequence[str]) -> dict[str, str]:
    """A marker per modality, stable for the common ones (:data:`MODALITY_MARKERS`)."""
    taken = set(MODALITY_MARKERS.values())
    spare = iter(m for m in _SPARE_MARKERS if m not in taken)
    return {m: MODALITY_MARKERS.get(m) or next(spare, "o") for m in modalities}


def swimmer(
    frame: pl.DataFrame,
    *,
    patient: str = "PatientID",
    days: str = "days_from_baseline",
    modality: str = "Modality",
    ax: Axes | None = None,
    label_patients: bool | None = None,
) -> Figure:
    """One row per patient, a marker per time point at its days from baseline, shaped by modality.

    ``frame`` has one row per time point (study or series) with the columns ``patient`` (the
    pseudonym), ``days`` (days from the patient's baseline, a number) and ``modality`` (a string,
    or a list of strings such as the ``modalities`` of the ``studies`` view: one marker each).
    Patients are ordered by follow-up, longest at the top (ties by pseudonym); a line spans each
    patient's first to last time point. Each modality is one line artist (``ax.lines``, no line
    style) whose points are exactly the rows' (days, patient row), patient row 0 at the top.
    ``label_patients`` shows the pseudonyms on the y axis (default: up to 40 patients). Raises
    :class:`~lake.errors.ColumnError` for a missing column or a row without days or patient.
    """
    import polars as pl

    what = "swimmer()"
    require_columns(frame, [patient, days, modality], what)
    require_values(frame, patient, what)
    require_values(frame, days, what)
    points = frame.select(
        pl.col(patient).alias("p"), pl.col(days).cast(pl.Float64).alias("d"), pl.col(modality).alias("m")
    )
    if isinstance(points.schema["m"], pl.List):
        points = points.explode("m")
    points = points.with_columns(pl.col("m").cast(pl.String).fill_null("unknown"))
    spans = points.group_by("p").agg(pl.col("d").min().alias("first"), pl.col("d").max().alias("last"))
    spans = spans.sort(["last", "p"], descending=[True, False]).with_row_index("row")
    points = points.join(spans.select("p", "row"), on="p")
    axes = _new_axes(ax, (8.0, 1.5 + 0.25 * min(spans.height, 60)))
    axes.hlines(spans["row"].to_numpy(), spans["first"].to_numpy(), spans["last"].to_numpy(), colors="0.75", zorder=1)
    names = sorted(points["m"].unique().to_list())
    markers = modality_markers(names)
    for name in names:
        chosen = points.filter(pl.col("m") == name).sort(["row", "d"])
        axes.plot(
            chosen["d"].to_numpy(),
            chosen["row"].to_numpy().astype(float),
            linestyle="none",
            marker=markers[name],
            label=name,
            zorder=2,
        )
    axes.set_ylim(spans.height - 0.5, -0.5)  # row 0 at the top
    if label_patients is None:
        label_patients = spans.height <= MAX_LABELLED_PATIENTS
    if label_patients:
        axes.set_yticks(np.arange(spans.height), [str(p) for p in spans["p"].to_list()], fontsize="small")
    else:
        axes.set_yticks([])
    axes.set_xlabel(f"days from baseline ({days})")
    axes.set_ylabel(f"{spans.height} patients")
    axes.set_title(f"{points.height} time points of {spans.height} patients")
    if names:
        axes.legend(title="modality", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    figure = axes.get_figure()
    assert isinstance(figure, Figure)
    return figure


def interval_histogram(
    frame: pl.DataFrame,
    *,
    column: str = "interval_days",
    bins: int | Sequence[float] = 20,
    window: tuple[float, float] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Histogram of intervals in days (``column``, e.g. the ``priors`` view's ``interval_days``).

    Rows whose interval is null (a patient's first study has no prior) are left out and counted
    in the title. ``window`` = (min_days, max_days) shades a follow-up window. A months axis runs
    along the top. The bars are ``ax.patches`` with the counts of ``numpy.histogram(values, bins)``.
    Raises :class:`~lake.errors.ColumnError` when the column is missing.
    """
    require_columns(frame, [column], "interval_histogram()")
    series = frame[column]
    values = series.drop_nulls().cast(float).to_numpy()
    axes = _new_axes(ax, (6.0, 3.5))
    if values.size:
        axes.hist(values, bins=bins if isinstance(bins, int) else list(bins), color="C0", edgecolor="white")
    if window is not None:
        axes.axvspan(
            window[0], window[1], color="C1", alpha=0.15, zorder=0, label=f"window {window[0]:g} to {window[1]:g} days"
        )
        axes.legend(loc="upper right", fontsize="small")
    axes.set_xlabel(f"days ({column})")
    axes.set_ylabel("count")
    months = axes.secondary_xaxis("top", functions=(_months, _days))
    months.set_xlabel("months")
    median = f", median {np.median(values):g} days" if values.size else ""
    left_out = f"; {series.null_count()} without an interval left out" if series.null_count() else ""
    axes.set_title(f"{values.size} intervals{median}{left_out}")
    figure = axes.get_figure()
    assert isinstance(figure, Figure)
    return figure


__all__ = ["interval_histogram", "modality_markers", "swimmer"]
