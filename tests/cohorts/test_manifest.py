"""Saved cohorts: pinned to table versions, re-run exactly, refused clearly, withdrawals respected."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import polars as pl
import pytest

import lake
from lake.cohorts import modality
from lake.errors import CohortError, KeyMismatchError, LakeMismatchError, VersionsVacuumedError
from lake.ingest import ingest
from lake.keys import generate_key, write_key
from lake.maintenance.forget import forget
from lake.maintenance.vacuum import vacuum
from lake.testing.longitudinal import StudyPlan, newcomer, write_plans
from tests.cohorts.conftest import Built


def _follow_up_cohort(lk: lake.Lake) -> lake.cohorts.Cohort:
    return lk.cohort().filter(modality("CT")).follow_ups(180, 540)


def _ingest_more(own: Built, where: Path) -> None:
    """A new patient, and a new follow-up of the followed patient (day 450, inside the window)."""
    followed = copy.deepcopy(own.plans["followed"])
    followed.studies.append(StudyPlan(450))
    write_plans(where, [followed, newcomer()])
    ingest(own.root, [where], key_file=own.key_file, workers=1)


def test_manifest_contents(built: Built, tmp_path: Path) -> None:
    lk = built.open()
    cohort = _follow_up_cohort(lk)
    manifest = cohort.save(tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["format"] == "lake-cohort/1" and data["sql"] == cohort.sql()
    assert data["versions"] == {"instances": lk.latest().versions["instances"]}  # the one table it reads
    assert data["lake_id"] == lk.config.lake_id and data["key_fingerprint"] == built.key.fingerprint
    assert data["counts"] == {"rows": 9, "patients": 4, "studies": 9}
    assert len(data["members"]) == 4 and manifest.content_hash == data["content_hash"]
    text = (tmp_path / "c.json").read_text()
    assert built.key_file.read_text().strip() not in text
    assert not any(built.pseudonym(x) in text for x in built.plans if x != "no_id")  # members are digests
    with pytest.raises(CohortError, match="exists"):
        cohort.save(tmp_path / "c.json")
    with pytest.raises(CohortError, match="inside the lake"):
        cohort.save(built.root / "c.json")
    with pytest.raises(CohortError, match="PatientID column"):
        lake.cohorts.save_query(lk.latest(), "SELECT count(*) AS n FROM studies", tmp_path / "n.json")


def test_same_rows_after_another_ingest(own: Built, tmp_path: Path) -> None:
    lk = own.open()
    saved = _follow_up_cohort(lk).studies()
    _follow_up_cohort(lk).save(tmp_path / "c.json")
    _ingest_more(own, tmp_path / "more")
    lk = own.open()
    live = _follow_up_cohort(lk).studies()
    assert live.height == saved.height + 3  # the new follow-up and the newcomer's two time points
    loaded = lake.load_cohort(tmp_path / "c.json", key_file=own.key_file)
    assert loaded.pinned and loaded.withdrawn == 0 and loaded.note() is None
    assert loaded.frame.equals(saved)
    assert lk.load_cohort(tmp_path / "c.json").frame.equals(saved)


def test_vacuumed_versions_are_a_clear_error(own: Built, tmp_path: Path) -> None:
    lk = own.open()
    _follow_up_cohort(lk).save(tmp_path / "c.json")
    _ingest_more(own, tmp_path / "more")
    assert lake.load_cohort(tmp_path / "c.json", key_file=own.key_file).pinned
    own.open().optimize()  # rewrites the tables: the pinned files leave the current version
    vacuum(own.root, retention_hours=0)
    with pytest.raises(VersionsVacuumedError, match="vacuumed") as err:
        lake.load_cohort(tmp_path / "c.json", key_file=own.key_file)
    assert "retention-hours" in str(err.value)
    with pytest.raises(VersionsVacuumedError):
        own.open().snapshot({"instances": 0})


def test_another_lake_or_another_key_is_refused(built: Built, tmp_path: Path) -> None:
    _follow_up_cohort(built.open()).save(tmp_path / "c.json")
    other = lake.init(tmp_path / "other", key_file=tmp_path / "other.key")
    with pytest.raises(LakeMismatchError, match="saved from lake"):
        lake.load_cohort(tmp_path / "c.json", lake=other)
    wrong = tmp_path / "wrong.key"
    write_key(generate_key(), wrong)
    with pytest.raises(KeyMismatchError):
        lake.load_cohort(tmp_path / "c.json", key_file=wrong)
    data = json.loads((tmp_path / "c.json").read_text())
    data["key_fingerprint"] = "0" * 16
    (tmp_path / "rekeyed.json").write_text(json.dumps(data))
    with pytest.raises(KeyMismatchError, match="fingerprint"):
        lake.load_cohort(tmp_path / "rekeyed.json", key_file=built.key_file)
    data = json.loads((tmp_path / "c.json").read_text())
    data["members"][next(iter(data["members"]))].append("0" * 64)
    (tmp_path / "altered.json").write_text(json.dumps(data))
    with pytest.raises(CohortError, match="altered"):
        lake.load_cohort(tmp_path / "altered.json", key_file=built.key_file)


def test_a_withdrawn_patient_is_never_returned_and_only_counted(own: Built, tmp_path: Path) -> None:
    lk = own.open()
    saved = _follow_up_cohort(lk).studies()
    _follow_up_cohort(lk).save(tmp_path / "c.json")
    _ingest_more(own, tmp_path / "more")  # ingested after the save, before the forget
    gone = own.pseudonym("withdrawn")
    forget(own.root, patient=gone, key_file=own.key_file)
    loaded = lake.load_cohort(tmp_path / "c.json", key_file=own.key_file)
    assert loaded.withdrawn == 1 and not loaded.pinned
    assert loaded.frame.equals(saved.filter(pl.col("PatientID") != gone))
    note = loaded.note() or ""
    assert "1 member was withdrawn" in note and gone not in note


def test_after_a_forget_changed_rows_are_a_clear_error(own: Built, tmp_path: Path) -> None:
    lk = own.open()
    lk.cohort().filter(modality("CT")).patients()  # time_points and follow-up days per patient
    lk.cohort().filter(modality("CT")).save(tmp_path / "p.json", level="patients")
    _ingest_more(own, tmp_path / "more")  # the followed patient gains a time point: its row changes
    forget(own.root, patient=own.pseudonym("withdrawn"), key_file=own.key_file)
    with pytest.raises(CohortError, match="1 saved rows missing"):
        lake.load_cohort(tmp_path / "p.json", key_file=own.key_file)
