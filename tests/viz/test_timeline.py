"""swimmer and interval_histogram plot exactly the rows given."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lake.errors import ColumnError
from lake.viz import interval_histogram, swimmer
from lake.viz.timeline import MODALITY_MARKERS


def _points(ax, name):  # type: ignore[no-untyped-def]
    (line,) = [ln for ln in ax.lines if ln.get_label() == name]
    return sorted(zip(line.get_xdata().tolist(), line.get_ydata().tolist(), strict=True))


def test_swimmer_one_row_per_patient_markers_by_modality() -> None:
    frame = pl.DataFrame(
        {
            "PatientID": ["b", "a", "a", "a", "c", "b"],
            "days_from_baseline": [0, 0, 200, 730, 0, 400],
            "Modality": ["CT", "CT", "MR", "CT", "CR", "MR"],
        }
    )
    fig = swimmer(frame)
    (ax,) = fig.axes
    # rows by follow-up, longest first: a (730 days) row 0, b (400) row 1, c (0) row 2
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert _points(ax, "CT") == [(0.0, 0.0), (0.0, 1.0), (730.0, 0.0)]
    assert _points(ax, "MR") == [(200.0, 0.0), (400.0, 1.0)]
    assert _points(ax, "CR") == [(0.0, 2.0)]
    assert {ln.get_label(): ln.get_marker() for ln in ax.lines} == {m: MODALITY_MARKERS[m] for m in ("CR", "CT", "MR")}
    assert all(ln.get_linestyle() == "None" for ln in ax.lines)
    (spans,) = ax.collections  # one line per patient from first to last time point
    segments = sorted(map(tuple, (s.ravel().tolist() for s in spans.get_segments())))
    assert segments == [(0.0, 0.0, 730.0, 0.0), (0.0, 1.0, 400.0, 1.0), (0.0, 2.0, 0.0, 2.0)]
    assert ax.get_ylim() == (2.5, -0.5)  # row 0 on top
    assert ax.get_title() == "6 time points of 3 patients"


def test_swimmer_list_of_modalities_is_one_marker_each() -> None:
    frame = pl.DataFrame(
        {"pid": ["p", "p"], "days": [0, 90], "modalities": [["CT", "PT"], ["CT"]]},
    )
    fig = swimmer(frame, patient="pid", days="days", modality="modalities", label_patients=False)
    (ax,) = fig.axes
    assert _points(ax, "CT") == [(0.0, 0.0), (90.0, 0.0)]
    assert _points(ax, "PT") == [(0.0, 0.0)]
    assert list(ax.get_yticks()) == []


def test_swimmer_names_a_missing_column_and_null_days() -> None:
    with pytest.raises(ColumnError, match="days_from_baseline"):
        swimmer(pl.DataFrame({"PatientID": ["a"], "Modality": ["CT"]}))
    frame = pl.DataFrame({"PatientID": ["a", "b"], "days_from_baseline": [0, None], "Modality": ["CT", "CT"]})
    with pytest.raises(ColumnError, match="1 of 2 rows have no days_from_baseline"):
        swimmer(frame)


def test_swimmer_draws_on_a_given_axes() -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    left, right = fig.subplots(1, 2)
    frame = pl.DataFrame({"PatientID": ["a"], "days_from_baseline": [5], "Modality": ["MR"]})
    assert swimmer(frame, ax=right) is fig
    assert len(right.lines) == 1 and len(left.lines) == 0


def test_interval_histogram_counts_are_numpy_histogram_of_the_non_null_rows() -> None:
    days = [None, 30, 180, 181, 365, 400, 1000, None]
    fig = interval_histogram(pl.DataFrame({"interval_days": days}), bins=5, window=(180, 540))
    ax = fig.axes[0]
    values = np.asarray([d for d in days if d is not None], dtype=float)
    counts, edges = np.histogram(values, bins=5)
    (bars,) = ax.containers
    assert [b.get_height() for b in bars] == counts.tolist()
    np.testing.assert_allclose([b.get_x() for b in bars], edges[:-1])
    assert ax.get_title() == "6 intervals, median 273 days; 2 without an interval left out"
    assert "window 180 to 540 days" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_interval_histogram_of_no_intervals_is_an_empty_plot() -> None:
    fig = interval_histogram(pl.DataFrame({"gap": [None, None]}, schema={"gap": pl.Int64}), column="gap")
    assert fig.axes[0].get_title() == "0 intervals; 2 without an interval left out"
    with pytest.raises(ColumnError, match="interval_days"):
        interval_histogram(pl.DataFrame({"gap": [1]}))
