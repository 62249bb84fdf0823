"""A small longitudinal archive whose cohort answers are known by construction (for cohort tests).

Each :class:`PatientPlan` lists its studies by day after the patient's first study; the files are
written with :func:`lake.testing.synthetic.make_instance` (fake identifiers everywhere). The lake
shifts every date of a patient by one offset, so intervals in the lake equal the planned ones
exactly; tests map the originals to the lake's pseudonyms and UIDs with the lake's key
(``key.pseudonym``, ``key.study_pseudonym``, ``key.uid``).

:func:`standard_plans` covers the cases a cohort must get right: a single study, follow-ups inside
and outside a window, same-day studies, several modalities, issuer spellings of one patient, studies
without a Patient ID, and a patient to withdraw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from pydicom.uid import CTImageStorage, MRImageStorage

from lake.testing.synthetic import SYNTHETIC_ROOT, PatientSpec, make_instance


@dataclass(frozen=True)
class StudyPlan:
    day: int  # days after the patient's first study
    modality: str = "CT"
    body_part: str = "CHEST"
    time: str = "101500"
    issuer: str = "HOSP"
    n_images: int = 2


@dataclass
class PatientPlan:
    label: str  # a test's name for the patient (never written to a file)
    number: int  # distinct per patient: the root of its original UIDs
    spec: PatientSpec
    studies: list[StudyPlan]
    has_patient_id: bool = True
    first_day: date = date(2011, 3, 14)
    study_uids: list[str] = field(default_factory=list)  # original StudyInstanceUIDs, in plan order
    series_uids: list[str] = field(default_factory=list)


def _patient(n: int, label: str, studies: list[StudyPlan], has_patient_id: bool = True) -> PatientPlan:
    names = ["QUIXOTE^ALONSO", "LOVELACE^ADA", "TESLA^NIKOLA", "CURIE^MARIE", "NOETHER^EMMY", "HOPPER^GRACE"]
    spec = PatientSpec(
        name=f"{names[n % len(names)]}{n}",
        patient_id=f"LGT{700100 + n * 13}",
        birth_date=f"19{40 + n:02d}0{1 + n % 9}1{n % 9}",
        accession_prefix=f"LA{n}Q",
    )
    first = date(2009, 1, 5) + timedelta(days=97 * n)
    return PatientPlan(label, n, spec, studies, has_patient_id, first)


def standard_plans() -> list[PatientPlan]:
    """The cohort tests' patients (see the module's documentation); labels name what each tests."""
    return [
        _patient(0, "single", [StudyPlan(0)]),
        _patient(
            1,
            "followed",
            [StudyPlan(0), StudyPlan(100, "MR", "HEAD"), StudyPlan(200), StudyPlan(400)],
        ),
        _patient(2, "gap", [StudyPlan(0), StudyPlan(900)]),
        _patient(3, "same_day", [StudyPlan(0, time="090000"), StudyPlan(0, time="140000"), StudyPlan(365)]),
        _patient(4, "issuers", [StudyPlan(0, issuer="HOSP"), StudyPlan(300, issuer="Hosp A")]),
        _patient(5, "no_id", [StudyPlan(0), StudyPlan(250)], has_patient_id=False),
        _patient(6, "withdrawn", [StudyPlan(0), StudyPlan(210)]),
        _patient(7, "mr_only", [StudyPlan(0, "MR", "HEAD"), StudyPlan(190, "MR", "HEAD")]),
    ]


def newcomer() -> PatientPlan:
    """A patient for a later ingest (with a baseline CT and a follow-up 220 days later)."""
    return _patient(8, "newcomer", [StudyPlan(0), StudyPlan(220)])


def write_plans(root: Path, plans: list[PatientPlan]) -> list[Path]:
    """Write the planned studies not written yet as Part 10 files under ``root`` (so a test can add
    studies to a plan and write only those); fills the plans' original UIDs."""
    paths = []
    for plan in plans:
        p = plan.number
        for s, study in enumerate(plan.studies):
            if s < len(plan.study_uids):
                continue
            base = f"{SYNTHETIC_ROOT}{8100 + p}.{s + 1}"
            study_uid, series_uid, frame_uid = base + ".1", base + ".2", base + ".3"
            plan.study_uids.append(study_uid)
            plan.series_uids.append(series_uid)
            plan.spec.uids += [study_uid, series_uid, frame_uid]
            when = plan.first_day + timedelta(days=study.day)
            folder = root / f"{plan.spec.patient_id}_{p}" / f"study{s}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(study.n_images):
                sop_uid = f"{base}.4.{i}"
                plan.spec.uids.append(sop_uid)
                ds = make_instance(
                    plan.spec, study_uid, series_uid, sop_uid, frame_uid, when, i, study.modality, 8, 8,
                    accession=f"{plan.spec.accession_prefix}{s}", seed=p * 10 + s,
                )  # fmt: skip
                ds.SOPClassUID = CTImageStorage if study.modality == "CT" else MRImageStorage
                ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
                ds.BodyPartExamined = study.body_part
                ds.StudyTime = study.time
                ds.IssuerOfPatientID = study.issuer
                if not plan.has_patient_id:
                    del ds.PatientID
                path = folder / f"{i:03d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                paths.append(path)
    return paths
