"""Synthetic DICOM instances carrying fake identifiers in many places, for PHI-leak tests and benchmarks.

Every identifier here is made up. ``PatientSpec`` holds the identifiers a test then searches the
lake for; ``write_study`` writes a realistic CT or MR series as Part 10 files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

#: A UID root for synthetic originals (not a registered UID: every value under it must be replaced).
SYNTHETIC_ROOT = "1.2.826.0.1.3680043.9.7777."


@dataclass
class PatientSpec:
    name: str  # DICOM PN, e.g. "QUIXOTE^ALONSO^M"
    patient_id: str
    birth_date: str
    accession_prefix: str
    institution: str = "SAINT HYPOTHETICAL HOSPITAL"
    physician: str = "ZORRO^DIEGO"
    address: str = "12 Imaginary Lane, Nowhere 99999"
    phone: str = "+1 555 010 4477"
    uids: list[str] = field(default_factory=list)  # filled with every original UID written

    def identifiers(self) -> list[str]:
        family, given = self.name.split("^")[:2]
        return [
            family,
            given,
            self.patient_id,
            self.accession_prefix,
            self.birth_date,
            self.institution,
            self.physician.split("^")[0],
            self.address.split(",")[0],
            *self.uids,
        ]


def _uid(counter: list[int], spec: PatientSpec) -> str:
    counter[0] += 1
    uid = f"{SYNTHETIC_ROOT}{abs(hash(spec.patient_id)) % 10**8}.{counter[0]}"
    spec.uids.append(uid)
    return uid


def make_instance(
    spec: PatientSpec,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    frame_uid: str,
    study_date: date,
    index: int,
    modality: str = "CT",
    rows: int = 32,
    cols: int = 32,
    accession: str = "",
    seed: int = 0,
) -> Dataset:
    """One single-frame image with identifiers in standard, nested, private and free-text places."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.SourceApplicationEntityTitle = "HOSP_PACS_7"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.PatientName = spec.name
    ds.PatientID = spec.patient_id
    ds.IssuerOfPatientID = "HOSP"
    ds.PatientBirthDate = spec.birth_date
    ds.PatientSex = "F"
    ds.PatientAge = "047Y"
    ds.PatientAddress = spec.address
    ds.PatientTelephoneNumbers = spec.phone
    ds.OtherPatientIDs = spec.patient_id + "-ALT"
    ds.AccessionNumber = accession
    ds.InstitutionName = spec.institution
    ds.InstitutionAddress = spec.address
    ds.ReferringPhysicianName = spec.physician
    ds.PerformingPhysicianName = spec.physician
    ds.OperatorsName = "OPERATOR^" + spec.name.split("^")[0]
    ds.StationName = "CT-ROOM-" + spec.patient_id[-3:]
    ds.DeviceSerialNumber = "SN" + spec.patient_id
    s = study_date.strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = s
    ds.StudyTime = "101500"
    ds.SeriesTime = "101600.250"
    ds.AcquisitionDateTime = s + "101700.500000+0100"
    ds.StudyID = "S" + spec.patient_id
    ds.StudyDescription = f"CT HEAD for {spec.name.split('^')[0]} {spec.patient_id}"
    ds.SeriesDescription = f"AXIAL 5mm {s}"
    ds.ImageComments = f"Patient {spec.name.replace('^', ' ')} called {spec.phone}; acc {accession}"
    ds.Modality = modality
    ds.BodyPartExamined = "HEAD"
    ds.Manufacturer = "ACME Imaging"
    ds.ManufacturerModelName = "Phantom 3000"
    ds.SoftwareVersions = "1.2.3"
    ds.KVP = "120"
    ds.SliceThickness = "5.0"
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.ImagePositionPatient = ["-8", "-8", str(5.0 * index)]
    ds.SeriesNumber = 2
    ds.InstanceNumber = index + 1
    ds.AcquisitionNumber = 1
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    # nested identifiers: request attributes, a referenced image, a coded institution
    req = Dataset()
    req.RequestedProcedureID = "RP" + spec.patient_id
    req.AccessionNumber = accession
    req.RequestingPhysician = spec.physician
    req.ScheduledProcedureStepStartDate = s
    inner = Dataset()
    inner.CodeValue = "X1"
    inner.CodingSchemeDesignator = "99HOSP"
    inner.CodeMeaning = f"requested by {spec.physician.split('^')[0]}"
    req.RequestedProcedureCodeSequence = Sequence([inner])
    ds.RequestAttributesSequence = Sequence([req])
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = sop_uid if index == 0 else study_uid + ".999"
    ds.ReferencedImageSequence = Sequence([ref])
    # private block with identifiers
    block = ds.private_block(0x0029, "HOSPITAL_PRIVATE", create=True)
    block.add_new(0x10, "LO", spec.name)
    block.add_new(0x11, "LO", spec.patient_id)
    block.add_new(0x12, "DA", s)
    rng = np.random.default_rng(seed + index)
    pixels = (rng.integers(0, 2000, size=(rows, cols), dtype=np.int16)).astype(np.int16)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = pixels.tobytes()
    return ds


def write_study(
    spec: PatientSpec, folder: Path, study_date: date, n_images: int = 4, modality: str = "CT", seed: int = 0
) -> list[Path]:
    """Write one study (one series) of ``n_images`` slices under ``folder``; returns the paths."""
    counter = [len(spec.uids)]
    study_uid = _uid(counter, spec)
    series_uid = _uid(counter, spec)
    frame_uid = _uid(counter, spec)
    accession = f"{spec.accession_prefix}{study_date:%y%m%d}"
    spec.uids  # noqa: B018 (UIDs were recorded by _uid)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_images):
        sop_uid = _uid(counter, spec)
        ds = make_instance(
            spec, study_uid, series_uid, sop_uid, frame_uid, study_date, i, modality, accession=accession, seed=seed
        )
        path = folder / f"{spec.name.split('^')[0]}_{spec.patient_id}_{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_cohort(root: Path, n_patients: int = 3, studies_per_patient: int = 2, n_images: int = 3) -> list[PatientSpec]:
    """Patients with studies in a 20-day window of June 1987 (so shifted dates can never equal originals)."""
    first = ["QUIXOTE^ALONSO", "LOVELACE^ADA", "TESLA^NIKOLA", "CURIE^MARIE", "NOETHER^EMMY", "RAMANUJAN^SRINIVASA"]
    specs = []
    for p in range(n_patients):
        spec = PatientSpec(
            name=first[p % len(first)] + ("" if p < len(first) else f"{p}"),
            patient_id=f"MRN{448100 + p * 7}",
            birth_date=f"1950{(p % 12) + 1:02d}{(p % 27) + 1:02d}",
            accession_prefix=f"ACC{p}X",
        )
        for s in range(studies_per_patient):
            study_date = date(1987, 6, 1) + timedelta(days=(p * 3 + s * 7) % 20)
            folder = root / f"{spec.name.replace('^', '_')}_{spec.patient_id}" / f"study{s}"
            write_study(spec, folder, study_date, n_images=n_images, seed=p * 100 + s)
        specs.append(spec)
    return specs
