"""The ``priors`` view: each (study, modality) beside its prior, on lakes whose answer is known by construction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, time, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lake
from lake.catalog.query import view_definitions
from lake.catalog.tables import append, to_arrow
from lake.headers.schema import load_table_schema
from lake.ingest import ingest
from tests.deid.helpers import ROOT, base

COLUMNS = [
    "PatientID",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "Modality",
    "BodyPartExamined",
    "PriorStudyInstanceUID",
    "PriorStudyDate",
    "interval_days",
    "time_point",
]
_sop = count()


def _study(
    patient: str,
    study: str,
    day: date | None,
    modality: str = "CT",
    body_part: str | None = None,
    at: time | None = time(9, 0),
    series: int = 2,
) -> list[dict[str, Any]]:
    """A study's instances: ``series`` series of two instances each, all of one modality."""
    return [
        {
            "SOPInstanceUID": f"2.25.{next(_sop)}",
            "PatientID": patient,
            "StudyInstanceUID": study,
            "SeriesInstanceUID": f"{study}.{modality}.{s}",
            "StudyDate": day,
            "StudyTime": at,
            "Modality": modality,
            "BodyPartExamined": body_part,
            "InstanceNumber": i + 1,
            "frame_count": 1,
            "header_json": "{}",
        }
        for s in range(series)
        for i in range(2)
    ]


def _lake(tmp_path: Path, *studies: list[dict[str, Any]]) -> lake.Lake:
    root = tmp_path / "lk"
    lk = lake.init(root)
    schema = load_table_schema("instances")
    rows = [r for s in studies for r in s]
    # two batches, as two ingests would write them
    append(lk.paths.table("instances"), to_arrow(rows[: len(rows) // 2], schema))
    append(lk.paths.table("instances"), to_arrow(rows[len(rows) // 2 :], schema))
    return lake.open(root)


def _priors(lk: lake.Lake, where: str = "true") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = lk.sql(
        f"SELECT * FROM priors WHERE {where} ORDER BY PatientID, Modality, time_point"
    ).to_dicts()
    return rows


def _chain(rows: list[dict[str, Any]]) -> list[tuple[str, str | None, int | None, int]]:
    return [(r["StudyInstanceUID"], r["PriorStudyInstanceUID"], r["interval_days"], r["time_point"]) for r in rows]


def test_columns_are_the_contract(tmp_path: Path) -> None:
    lk = _lake(tmp_path, _study("P", "S1", date(2020, 1, 1)))
    described = lk.sql("DESCRIBE priors")
    assert described["column_name"].to_list() == COLUMNS
    types = dict(zip(described["column_name"], described["column_type"], strict=True))
    assert (types["StudyDate"], types["StudyTime"], types["interval_days"], types["time_point"]) == (
        "DATE",
        "TIME",
        "BIGINT",
        "BIGINT",
    )
    documented = next(v for v in view_definitions() if v.name == "priors").columns
    assert [name for name, _ in documented] == COLUMNS


def test_a_single_study_has_no_prior(tmp_path: Path) -> None:
    lk = _lake(tmp_path, _study("P", "S1", date(2020, 1, 1), body_part="CHEST"))
    (row,) = _priors(lk)
    assert row == {
        "PatientID": "P",
        "StudyInstanceUID": "S1",
        "StudyDate": date(2020, 1, 1),
        "StudyTime": time(9, 0),
        "Modality": "CT",
        "BodyPartExamined": "CHEST",
        "PriorStudyInstanceUID": None,
        "PriorStudyDate": None,
        "interval_days": None,
        "time_point": 1,
    }


def test_same_day_studies_are_ordered_by_time_then_uid(tmp_path: Path) -> None:
    day = date(2021, 3, 4)
    lk = _lake(
        tmp_path,
        _study("P", "S-d", day, at=time(10, 0)),
        _study("P", "S-b", day, at=time(9, 0)),
        _study("P", "S-a", day, at=time(10, 0)),
        _study("P", "S-c", day, at=time(8, 0)),
        _study("P", "S-0", day - timedelta(days=400), at=time(23, 0)),
    )
    assert _chain(_priors(lk)) == [
        ("S-0", None, None, 1),
        ("S-c", "S-0", 400, 2),
        ("S-b", "S-c", 0, 3),
        ("S-a", "S-b", 0, 4),
        ("S-d", "S-a", 0, 5),
    ]


def test_missing_study_time_comes_after_the_timed_studies_of_that_day(tmp_path: Path) -> None:
    day = date(2019, 7, 1)
    lk = _lake(
        tmp_path,
        _study("P", "S-z", day, at=None),
        _study("P", "S-y", day, at=None),
        _study("P", "S-x", day, at=time(17, 30)),
        _study("P", "S-w", day + timedelta(days=1), at=None),
    )
    rows = _priors(lk)
    assert _chain(rows) == [("S-x", None, None, 1), ("S-y", "S-x", 0, 2), ("S-z", "S-y", 0, 3), ("S-w", "S-z", 1, 4)]
    assert [r["StudyTime"] for r in rows] == [time(17, 30), None, None, None]


def test_the_prior_shares_the_modality(tmp_path: Path) -> None:
    start = date(2018, 1, 1)
    lk = _lake(
        tmp_path,
        _study("P", "S1", start, "CT"),
        _study("P", "S2", start + timedelta(days=30), "MR"),
        _study("P", "S3", start + timedelta(days=100), "CT"),
        # one study with CT and PT series: a row for each modality
        _study("P", "S4", start + timedelta(days=365), "CT") + _study("P", "S4", start + timedelta(days=365), "PT"),
        _study("P", "S5", start + timedelta(days=400), "MR"),
        _study("Q", "S6", start + timedelta(days=50), "CT"),  # another patient never links
    )
    by_modality: dict[str, list[Any]] = {}
    for r in _priors(lk, "PatientID = 'P'"):
        by_modality.setdefault(r["Modality"], []).append(r)
    assert _chain(by_modality["CT"]) == [("S1", None, None, 1), ("S3", "S1", 100, 2), ("S4", "S3", 265, 3)]
    assert _chain(by_modality["MR"]) == [("S2", None, None, 1), ("S5", "S2", 370, 2)]
    assert _chain(by_modality["PT"]) == [("S4", None, None, 1)]
    assert by_modality["CT"][2]["PriorStudyDate"] == start + timedelta(days=100)
    assert _chain(_priors(lk, "PatientID = 'Q'")) == [("S6", None, None, 1)]
    assert lk.sql("SELECT count(*) FROM priors")[0, 0] == 7


def test_body_part_must_match_only_where_both_record_one(tmp_path: Path) -> None:
    d = [date(2015, 1, 1) + timedelta(days=100 * k) for k in range(7)]
    lk = _lake(
        tmp_path,
        _study("P", "S1", d[0], body_part="CHEST"),
        _study("P", "S2", d[1], body_part="HEAD"),  # another body part: no prior
        _study("P", "S3", d[2], body_part=None),  # none recorded: the latest earlier study
        _study("P", "S4", d[3], body_part="CHEST"),  # S3 (none recorded) is later than S1
        _study("P", "S5", d[4], body_part="HEAD"),  # S4 is another body part: S3 again
        _study("P", "S6", d[5], body_part="CHEST"),  # S4, not S5
        _study("P", "S7", d[6], body_part="KNEE"),  # S3, the only earlier study it may follow
    )
    rows = _priors(lk)
    assert _chain(rows) == [
        ("S1", None, None, 1),
        ("S2", None, None, 2),
        ("S3", "S2", 100, 3),
        ("S4", "S3", 100, 4),
        ("S5", "S3", 200, 5),
        ("S6", "S4", 200, 6),
        ("S7", "S3", 400, 7),
    ]
    assert [r["BodyPartExamined"] for r in rows] == ["CHEST", "HEAD", None, "CHEST", "HEAD", "CHEST", "KNEE"]


def test_a_study_whose_series_record_different_body_parts_takes_the_first(tmp_path: Path) -> None:
    lk = _lake(
        tmp_path,
        _study("P", "S1", date(2020, 1, 1), body_part="CHEST"),
        _study("P", "S2", date(2020, 6, 1), body_part="HEAD", series=1)
        + _study("P", "S2", date(2020, 6, 1), body_part="ABDOMEN", series=1)[:1],
        _study("P", "S3", date(2021, 1, 1), body_part="ABDOMEN"),
    )
    rows = _priors(lk)
    assert [r["BodyPartExamined"] for r in rows] == ["CHEST", "ABDOMEN", "ABDOMEN"]
    assert _chain(rows) == [("S1", None, None, 1), ("S2", None, None, 2), ("S3", "S2", 214, 3)]


def _dicom(folder: Path, name: str, pid: str | None, study: str, day: date, modality: str = "CT") -> None:
    ds = base(name)
    ds.StudyInstanceUID = ROOT + "1." + study
    ds.SeriesInstanceUID = ROOT + "2." + study
    if pid is None:
        del ds.PatientID
    else:
        ds.PatientID = pid
    ds.Modality = modality
    ds.StudyDate = f"{day:%Y%m%d}"
    ds.StudyTime = "101500"
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / f"{name}.dcm", enforce_file_format=True)


def test_studies_without_a_patient_id_are_each_their_own_patient(tmp_path: Path) -> None:
    """After ingest (de-identified, dates shifted): no ID means one patient per study, never linked."""
    src = tmp_path / "src"
    _dicom(src, "a1", None, "1", date(2000, 1, 1))
    _dicom(src, "a2", None, "1", date(2000, 1, 1))  # the same study's other instance
    _dicom(src, "b1", None, "2", date(2000, 3, 1))  # same modality, two months later: someone else
    _dicom(src, "c1", "MRN5", "3", date(2010, 5, 1))
    _dicom(src, "c2", "MRN5", "4", date(2011, 8, 13))
    root = tmp_path / "lk"
    ingest(root, [src])
    rows = _priors(lake.open(root))
    assert len(rows) == 4 and all(r["PatientID"] for r in rows)
    singles = [r for r in rows if r["time_point"] == 1 and r["PriorStudyInstanceUID"] is None]
    assert len(singles) == 3 and len({r["PatientID"] for r in singles}) == 3
    (linked,) = [r for r in rows if r["PriorStudyInstanceUID"] is not None]
    # shifted dates, exact interval
    assert linked["interval_days"] == (date(2011, 8, 13) - date(2010, 5, 1)).days
    assert linked["StudyDate"] != date(2011, 8, 13)
    assert linked["time_point"] == 2


# -- random histories against a brute-force reading of the definition ---------------------------------
BODY_PARTS = [None, "CHEST", "HEAD"]


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Studies of up to three patients: few dates, times and UIDs, so ties are common."""
    studies = []
    for k in range(draw(st.integers(1, 14))):
        studies.append(
            {
                "PatientID": draw(st.sampled_from(["P1", "P2", "P3"])),
                "StudyInstanceUID": f"2.25.{draw(st.integers(1, 40))}.{k}",
                "StudyDate": date(2020, 1, 1) + timedelta(days=draw(st.integers(0, 3)) * 90),
                "StudyTime": draw(st.sampled_from([None, time(8, 0), time(12, 0)])),
                "Modality": draw(st.sampled_from(["CT", "MR", None])),
                "BodyPartExamined": draw(st.sampled_from(BODY_PARTS)),
            }
        )
    return studies


def _reference(studies: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """The definition, spelled out: order by (date, time, UID), prior = latest earlier compatible study."""

    def order(s: dict[str, Any]) -> tuple[Any, ...]:
        return (s["StudyDate"], s["StudyTime"] is None, s["StudyTime"] or time(0), s["StudyInstanceUID"])

    out = set()
    for s in studies:
        group = sorted(
            (t for t in studies if t["PatientID"] == s["PatientID"] and t["Modality"] == s["Modality"]), key=order
        )
        point = next(i for i, t in enumerate(group) if t is s) + 1
        earlier = [] if s["Modality"] is None else group[: point - 1]
        candidates = [
            t
            for t in earlier
            if s["BodyPartExamined"] is None
            or t["BodyPartExamined"] is None
            or t["BodyPartExamined"] == s["BodyPartExamined"]
        ]
        prior = candidates[-1] if candidates else None
        out.add(
            (
                s["StudyInstanceUID"],
                s["Modality"],
                prior and prior["StudyInstanceUID"],
                prior and (s["StudyDate"] - prior["StudyDate"]).days,
                point,
            )
        )
    return out


@pytest.fixture(scope="module")
def memory_con() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    yield con
    con.close()


@settings(max_examples=60, deadline=None)
@given(studies=histories())
def test_random_histories_match_the_definition(
    memory_con: duckdb.DuckDBPyConnection, studies: list[dict[str, Any]]
) -> None:
    # the view's SQL over an in-memory instances table (two instances per study): no lake needed
    con = memory_con
    columns = ["PatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "Modality", "BodyPartExamined"]
    con.execute(
        "CREATE OR REPLACE TABLE instances (PatientID VARCHAR, StudyInstanceUID VARCHAR, StudyDate DATE, "
        "StudyTime TIME, Modality VARCHAR, BodyPartExamined VARCHAR)"
    )
    values = [s[c] for s in studies for _ in range(2) for c in columns]
    con.execute("INSERT INTO instances VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?)"] * (2 * len(studies))), values)
    sql = next(v for v in view_definitions() if v.name == "priors").sql
    got = con.execute(
        f"SELECT StudyInstanceUID, Modality, PriorStudyInstanceUID, interval_days, time_point FROM ({sql})"
    ).fetchall()
    assert len(got) == len(studies)
    assert set(got) == _reference(studies)
