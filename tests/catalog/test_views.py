"""The series, studies, patients and timeline views on hand-built rows with known answers."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import lake
from lake.catalog.tables import append, to_arrow
from lake.headers.schema import load_table_schema

AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
TILT = 15.0
TILTED = [1.0, 0.0, 0.0, 0.0, math.cos(math.radians(TILT)), -math.sin(math.radians(TILT))]


def _series(
    patient: str,
    study: str,
    series: str,
    day: date,
    modality: str,
    positions: list[list[float]] | None,
    orientation: list[float] | None,
    n: int | None = None,
    **extra: Any,
) -> list[dict[str, Any]]:
    count = len(positions) if positions is not None else (n or 1)
    return [
        {
            "SOPInstanceUID": f"2.25.{abs(hash((series, i))) % 10**12}{i}",
            "PatientID": patient,
            "StudyInstanceUID": study,
            "SeriesInstanceUID": series,
            "StudyDate": day,
            "Modality": modality,
            "InstanceNumber": i + 1,
            "ImagePositionPatient": positions[i] if positions is not None else None,
            "ImageOrientationPatient": orientation,
            "Rows": 64,
            "Columns": 32,
            "PixelSpacing": [0.5, 0.8],
            "frame_count": 1,
            "pixel_bytes": 64 * 32 * 2,
            "pixel_status": "stored",
            "header_json": "{}",
            **extra,
        }
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def view_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    os.environ["LAKE_HOME"] = str(tmp_path_factory.mktemp("home"))
    root = tmp_path_factory.mktemp("lakes") / "views"
    lk = lake.init(root)
    rows: list[dict[str, Any]] = []
    rows += _series("P-A", "S1", "regular", date(2020, 1, 1), "CT", [[0, 0, 2.5 * i] for i in range(5)], AXIAL)
    rows += _series("P-A", "S1", "gap", date(2020, 1, 1), "CT", [[0, 0, z] for z in (0, 2, 4, 8, 10)], AXIAL)
    # a tilted gantry: the table moves along z, the image plane is tilted
    rows += _series("P-A", "S2", "tilted", date(2020, 8, 1), "CT", [[0, 0, 3.0 * i] for i in range(4)], TILTED)
    rows += _series("P-A", "S3", "sagittal", date(2021, 1, 1), "MR", [[4.0 * i, 0, 0] for i in range(3)], SAGITTAL)
    rows += _series("P-B", "S4", "xray", date(2019, 5, 5), "CR", None, None)
    rows += _series("P-B", "S4", "dup", date(2019, 5, 5), "CT", [[0, 0, 0], [0, 0, 0], [0, 0, 5]], AXIAL)
    rows += _series(
        "P-B",
        "S5",
        "enhanced",
        date(2019, 5, 9),
        "MR",
        [[0, 0, 0]],
        AXIAL,
        frame_count=20,
        frame_slice_spacing=1.5,
        frame_slices_regular=True,
        frame_slice_extent=28.5,
    )
    schema = load_table_schema("instances")
    # two batches, as two ingests would write them
    append(lk.paths.table("instances"), to_arrow(rows[:7], schema))
    append(lk.paths.table("instances"), to_arrow(rows[7:], schema))
    return root


def _series_row(lk: lake.Lake, uid: str) -> dict[str, Any]:
    return lk.sql("SELECT * FROM series WHERE SeriesInstanceUID = ?", [uid]).row(0, named=True)


def test_series_geometry(view_lake: Path) -> None:
    lk = lake.open(view_lake)
    regular = _series_row(lk, "regular")
    assert regular["slice_spacing"] == pytest.approx(2.5)
    assert regular["regular_spacing"] is True
    assert regular["is_volume"] is True
    assert regular["orientation"] == "AXIAL"
    assert regular["gantry_tilt"] == pytest.approx(0.0, abs=1e-6)
    assert regular["slice_extent_mm"] == pytest.approx(10.0)
    assert regular["field_of_view_mm"] == pytest.approx([32 * 0.8, 64 * 0.5])
    assert regular["instance_count"] == 5

    gap = _series_row(lk, "gap")
    assert gap["slice_spacing"] == pytest.approx(2.0)
    assert (gap["slice_spacing_min"], gap["slice_spacing_max"]) == pytest.approx((2.0, 4.0))
    assert gap["regular_spacing"] is False
    assert gap["is_volume"] is False

    tilted = _series_row(lk, "tilted")
    assert tilted["gantry_tilt"] == pytest.approx(TILT, abs=1e-3)
    # spacing is measured along the slice normal, not along z
    assert tilted["slice_spacing"] == pytest.approx(3.0 * math.cos(math.radians(TILT)), abs=1e-3)
    assert tilted["orientation"] == "AXIAL"

    sagittal = _series_row(lk, "sagittal")
    assert sagittal["orientation"] == "SAGITTAL"
    assert sagittal["slice_spacing"] == pytest.approx(4.0)
    assert sagittal["is_volume"] is True

    xray = _series_row(lk, "xray")
    assert xray["orientation"] is None and xray["slice_spacing"] is None and xray["is_volume"] is False

    dup = _series_row(lk, "dup")
    assert dup["distinct_positions"] == 2 and dup["is_volume"] is False

    enhanced = _series_row(lk, "enhanced")
    assert enhanced["slice_spacing"] == pytest.approx(1.5)
    assert enhanced["slice_extent_mm"] == pytest.approx(28.5)
    assert enhanced["is_volume"] is True


def test_studies_patients_timeline(view_lake: Path) -> None:
    lk = lake.open(view_lake)
    studies = {r["StudyInstanceUID"]: r for r in lk.sql("SELECT * FROM studies").iter_rows(named=True)}
    assert studies["S1"]["modalities"] == ["CT"] and studies["S1"]["series_count"] == 2
    assert studies["S1"]["instance_count"] == 10
    assert studies["S2"]["days_from_first_study"] == (date(2020, 8, 1) - date(2020, 1, 1)).days
    assert studies["S4"]["modalities"] == ["CR", "CT"]

    patients = {r["PatientID"]: r for r in lk.sql("SELECT * FROM patients").iter_rows(named=True)}
    assert patients["P-A"]["study_count"] == 3
    assert patients["P-A"]["first_study_date"] == date(2020, 1, 1)
    assert patients["P-A"]["last_study_date"] == date(2021, 1, 1)
    assert patients["P-A"]["follow_up_days"] == 366
    assert patients["P-A"]["modalities"] == ["CT", "MR"]

    timeline = lk.sql("SELECT * FROM timeline WHERE PatientID = 'P-A' ORDER BY study_index").to_dicts()
    assert [t["StudyInstanceUID"] for t in timeline] == ["S1", "S2", "S3"]
    assert [t["days_since_previous_study"] for t in timeline] == [None, 213, 153]


def test_longitudinal_question(view_lake: Path) -> None:
    """Patients with two CT studies at least 180 days apart, straight from the timeline."""
    lk = lake.open(view_lake)
    df = lk.sql(
        "SELECT PatientID, date_diff('day', min(StudyDate), max(StudyDate)) AS span FROM timeline "
        "WHERE list_contains(modalities, 'CT') GROUP BY PatientID HAVING count(*) >= 2 AND span >= 180"
    )
    assert df.rows() == [("P-A", 213)]


def test_a_lake_written_before_a_column_was_promoted_still_opens(tmp_path: Path) -> None:
    """Columns added to ``schemas/`` later read as NULL in the lake's older files; views work."""
    lk = lake.init(tmp_path / "old")
    schema = load_table_schema("instances")
    rows = _series("P-A", "S1", "regular", date(2020, 1, 1), "CT", [[0, 0, 2.5 * i] for i in range(5)], AXIAL)
    older = to_arrow(rows, schema).drop_columns(["frame_slice_spacing", "StudyTime", "KVP"])
    append(lk.paths.table("instances"), older)
    lk = lake.open(tmp_path / "old")
    got = lk.sql("SELECT frame_slice_spacing, StudyTime, KVP FROM instances")
    assert got.null_count().row(0) == (5, 5, 5)
    assert str(lk.sql("SELECT typeof(StudyTime) t FROM instances LIMIT 1")[0, 0]) == "TIME"
    assert lk.sql("SELECT slice_spacing FROM series")[0, 0] == pytest.approx(2.5)
    assert lk.sql("SELECT instance_count FROM studies")[0, 0] == 5
    # a later batch with the column: earlier rows stay NULL, new rows have values
    append(
        lk.paths.table("instances"),
        to_arrow([{**r, "SOPInstanceUID": r["SOPInstanceUID"] + "9", "KVP": 120.0} for r in rows], schema),
    )
    assert lake.open(tmp_path / "old").sql("SELECT count(KVP) n FROM instances")[0, 0] == 5
