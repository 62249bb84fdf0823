"""Cohort semantics on the longitudinal lake, where every answer is known by construction."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from lake.cohorts import Criterion, acquisition, body_part, contrast, description, modality, sql
from lake.errors import CohortError, QueryRefusedError
from tests.cohorts.conftest import Built


def _days(built: Built, frame: pl.DataFrame) -> dict[str, list[int]]:
    """{label: days_from_baseline of the patient's time points} for the patients in ``frame``."""
    by_pseudonym = {built.pseudonym(label): label for label in built.plans}
    out: dict[str, list[int]] = {}
    for row in frame.sort("PatientID", "time_point").iter_rows(named=True):
        out.setdefault(by_pseudonym.get(row["PatientID"], "?"), []).append(row["days_from_baseline"])
    return out


def test_ct_baseline_with_follow_ups_in_a_window(built: Built) -> None:
    lk = built.open()
    cohort = lk.cohort().filter(modality("CT")).follow_ups(180, 540)
    studies = cohort.studies()
    # single: no follow-up; gap: 900 days > 540; no_id: two one-study patients; mr_only: no CT;
    # followed: its MR study (day 100) is not a selected series; same_day: the 14:00 study is day 0
    assert _days(built, studies) == {
        "followed": [0, 200, 400],
        "same_day": [0, 365],
        "issuers": [0, 300],
        "withdrawn": [0, 210],
    }
    assert studies.filter(pl.col("is_baseline"))["StudyInstanceUID"].sort().to_list() == sorted(
        built.study_uids(label)[0] for label in ("followed", "same_day", "issuers", "withdrawn")
    )
    patients = cohort.patients()
    assert patients.height == 4
    followed = patients.filter(pl.col("PatientID") == built.pseudonym("followed")).row(0, named=True)
    assert followed["time_points"] == 3 and followed["follow_up_days"] == 400
    assert followed["days_from_baseline"] == [0, 200, 400]


def test_the_sql_it_prints_is_the_query_it_runs(built: Built) -> None:
    lk = built.open()
    cohort = lk.cohort().filter(modality("CT"), body_part("chest")).follow_ups(180, 540)
    text = cohort.sql("series")
    assert text.startswith("WITH cohort_series AS")
    assert lk.sql(text).equals(cohort.series())
    assert cohort.series()["Modality"].unique().to_list() == ["CT"]


def test_same_day_studies_are_ordered_by_time_then_uid(built: Built) -> None:
    lk = built.open()
    studies = lk.cohort().filter_patients(f"PatientID = '{built.pseudonym('same_day')}'").studies()
    uids = built.study_uids("same_day")
    assert studies["StudyInstanceUID"].to_list() == uids  # 09:00, then 14:00 the same day, then a year later
    assert studies["days_from_baseline"].to_list() == [0, 0, 365]
    assert studies["time_point"].to_list() == [1, 2, 3]
    assert str(studies["StudyTime"][0]) == "09:00:00"


def test_baseline_matching_a_criterion_and_modalities(built: Built) -> None:
    lk = built.open()
    # all modalities: the followed patient's baseline is the CT at day 0, the MR (day 100) a time point
    every = _days(built, lk.cohort().studies())
    assert every["followed"] == [0, 100, 200, 400]
    assert every["single"] == [0]
    # a baseline that must be an MR: the followed patient starts at day 100; mr_only at its first MR
    mr_first = _days(built, lk.cohort().baseline(modality("MR")).studies())
    assert mr_first["followed"] == [0, 100, 300]
    assert mr_first["mr_only"] == [0, 190]
    assert "single" not in mr_first


def test_a_patient_under_two_issuer_spellings_is_one_patient(built: Built) -> None:
    lk = built.open()
    studies = lk.cohort().filter_patients(f"PatientID = '{built.pseudonym('issuers')}'").studies()
    assert studies["StudyInstanceUID"].to_list() == built.study_uids("issuers")
    assert studies["days_from_baseline"].to_list() == [0, 300]


def test_studies_without_patient_id_are_separate_one_study_patients(built: Built) -> None:
    lk = built.open()
    key = built.key
    plan = built.plans["no_id"]
    pseudonyms = [key.study_pseudonym(u) for u in plan.study_uids]
    patients = lk.cohort().filter_patients(f"PatientID IN ('{pseudonyms[0]}', '{pseudonyms[1]}')").patients()
    assert sorted(patients["PatientID"].to_list()) == sorted(pseudonyms)
    assert patients["time_points"].to_list() == [1, 1]
    assert (
        lk.cohort()
        .filter_patients(f"PatientID IN ('{pseudonyms[0]}', '{pseudonyms[1]}')")
        .follow_ups(0, 10_000)
        .patients()
        .height
        == 0
    )


def test_min_time_points_and_priors(built: Built) -> None:
    lk = built.open()
    three = lk.cohort().filter(modality("CT")).min_time_points(3).patients()
    assert sorted(three["PatientID"].to_list()) == sorted(built.pseudonym(x) for x in ("followed", "same_day"))
    with_priors = lk.cohort().filter(modality("CT")).follow_ups(180, 540).with_priors().studies()
    followed = with_priors.filter(pl.col("PatientID") == built.pseudonym("followed")).sort("time_point")
    uids = built.study_uids("followed")
    assert followed["PriorStudyInstanceUID"].to_list() == [None, uids[0], uids[2]]
    assert followed["interval_days"].to_list() == [None, 200, 200]
    # the year-later study's prior is the same-day 14:00 study, which is not a follow-up
    same_day = with_priors.filter(pl.col("PatientID") == built.pseudonym("same_day")).sort("time_point")
    assert same_day["PriorStudyInstanceUID"].to_list() == [None, built.study_uids("same_day")[1]]


def test_index_dates_per_patient(built: Built) -> None:
    lk = built.open()
    followed = built.pseudonym("followed")
    dates = lk.sql("SELECT StudyDate FROM studies WHERE StudyInstanceUID = ?", [built.study_uids("followed")[2]])
    after = lk.cohort().filter(modality("CT")).baseline(on_or_after={followed: dates[0, 0]}).studies()
    assert _days(built, after) == {"followed": [0, 200]}  # baseline at the day-200 study


def test_polars_expressions_and_helpers(built: Built) -> None:
    lk = built.open()
    by_sql = lk.cohort().filter(modality("MR")).patients()
    by_polars = lk.cohort().filter(pl.col("Modality") == "MR").patients()
    assert by_sql.equals(by_polars)
    assert "SeriesInstanceUID IN ('2.25." in lk.cohort().filter(pl.col("Modality") == "MR").sql()
    axial = lk.sql("SELECT count(*) FROM series WHERE SeriesDescription ILIKE '%axial%'")[0, 0]
    assert axial > 0 and lk.cohort().filter(description("%axial%")).series().height == axial
    kvp = lk.cohort().filter(acquisition(KVP=(100, 140))).series()
    assert kvp.height == lk.sql("SELECT count(*) FROM series")[0, 0]  # every synthetic image has KVP 120
    assert lk.cohort().filter(acquisition(KVP=(130, None))).series().height == 0
    assert lk.cohort().filter(contrast()).series().height == 0
    assert lk.cohort().filter(~contrast() & modality("MR")).series()["Modality"].unique().to_list() == ["MR"]
    females = lk.cohort().filter(sql("PatientSex = 'F'", "patients")).patients()
    assert females.height == lk.sql("SELECT count(*) FROM patients")[0, 0]
    with pytest.raises(CohortError, match="not a column"):
        acquisition(NoSuchThing=1)
    with pytest.raises(CohortError, match="cohort level"):
        Criterion("true", "visits")


def test_a_filter_cannot_smuggle_a_statement(built: Built, tmp_path: Path) -> None:
    lk = built.open()
    out = tmp_path / "x.csv"
    with pytest.raises((QueryRefusedError, duckdb.ParserException)):
        lk.cohort().filter(f"true); COPY (SELECT 1) TO '{out}'; SELECT (1").studies()
    with pytest.raises(QueryRefusedError):
        lk.cohort().filter(f"SeriesInstanceUID IN (SELECT * FROM read_csv('{built.key_file}'))").studies()
    assert not out.exists()
