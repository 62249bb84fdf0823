"""A synthetic longitudinal archive: made-up patients imaged for years, on real pixel data.

``write_archive(folder, ArchiveSpec())`` writes what a hospital PACS export looks like: 40 patients
(by default), each with 2 to 6 studies over 1 to 10 years (CT abdomen, MR brain, CR chest), in
folders named after the patient, with the identifiers a de-identifier must remove (names, MRNs,
accession numbers, birth dates, addresses, institutions, referring and performing physicians,
dates and names written into free text), issuer variation (IssuerOfPatientID empty on the older
scanner, a site code on the newer one, for the same MRN) and a few studies without a Patient ID.

The images are those pydicom and pydicom-data ship (``CT_small.dcm``, ``MR_small.dcm``,
``RG1_UNCR.dcm``): their pixel data, geometry and acquisition attributes. A CT or MR series is
re-sliced from its one image: slice ``j`` of the patient's anatomy (at ``z = z0 + j * spacing``
in patient coordinates, consistent across the patient's studies) is the image shifted by ``j``
rows, so the same position shows the same content in every study; a lesion (a disc of raised
signal at a fixed patient position) grows from study to study, for prior comparisons.

Everything follows from ``ArchiveSpec.seed``: two calls write the same files byte for byte.
Every name, number and address is made up.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from lake.errors import SourceError

#: A UID root for the archive's originals (not registered: the lake replaces every UID under it).
ARCHIVE_ROOT = "1.2.826.0.1.3680043.9.7777.13."

FAMILY_NAMES = (
    "Abernathy", "Okonkwo", "Lindqvist", "Castellanos", "Whitfield", "Nakamura", "Brennan", "Delacroix",
    "Fitzgerald", "Hargreaves", "Iglesias", "Jablonski", "Kowalczyk", "Lambrecht", "Mancini", "Nordstrom",
    "Oyelaran", "Pettersen", "Quintero", "Rasmussen", "Sandoval", "Thornbury", "Underhill", "Vasquez",
    "Wojcik", "Yamamoto", "Zielinski", "Achterberg", "Bellweather", "Carrington", "Dunleavy", "Eriksson",
    "Fontaine", "Gallagher", "Halvorsen", "Ivanova", "Jorgensen", "Kettering", "Lachance", "Montgomery",
    "Navarro", "Pemberton", "Radcliffe", "Stavropoulos", "Tremblay", "Villanueva", "Weatherby", "Xenakis",
    "Yarborough", "Zimmerman", "Blackwood", "Coldwell", "Dragomir", "Esposito", "Ferreira", "Goldberg",
    "Haverford", "Ishikawa", "Kristiansen", "Lundgren", "Moreau", "Novak", "Olabisi", "Przybylski",
)  # fmt: skip
GIVEN_NAMES = {
    "F": ("Margaret", "Eleanor", "Beatrix", "Dorothea", "Harriet", "Josephine", "Matilda", "Ophelia",
          "Rosalind", "Tabitha", "Vivienne", "Wilhelmina", "Clementine", "Evangeline", "Genevieve", "Imogen"),
    "M": ("Theodore", "Winston", "Cornelius", "Augustin", "Gideon", "Ignatius", "Leopold", "Nathaniel",
          "Percival", "Sebastian", "Ulysses", "Bartholomew", "Desmond", "Frederick", "Lysander", "Thaddeus"),
}  # fmt: skip
PHYSICIANS = ("HARTLEY^SIMON^^DR", "OKAFOR^ADAEZE^^DR", "BRANDVOLD^KNUT^^DR", "SOLBERG^INGRID^^DR")
TECHNOLOGISTS = ("MARCHETTI^LUCA", "DEVEREUX^PAULINE", "ACHEBE^CHIDI")
STREETS = ("Larkspur Lane", "Quarry Hill Road", "Wexford Terrace", "Pelham Crescent", "Tamarind Avenue")
TOWNS = ("Port Ellis", "Wendover Falls", "Ashcombe", "Brackenridge")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True)
class Site:
    name: str
    address: str
    issuer: str  # IssuerOfPatientID written by its newer scanners
    station: str


SITES = (
    Site("Grand Harbor General Hospital", "1200 Harbor Way, Port Ellis", "GHGH", "GHGH"),
    Site("Saint Aldric Imaging Center", "77 Cloister Street, Ashcombe", "GHGH", "SAIC"),
)


@dataclass(frozen=True)
class Exam:
    """One kind of study: the pip-shipped file it is made from and what it is called."""

    modality: str
    template: str  # a pydicom / pydicom-data test file
    body_part: str
    study_description: str
    series_description: str
    slices: int  # 1 for a radiograph


EXAMS = {
    "CT": Exam("CT", "CT_small.dcm", "ABDOMEN", "CT ABDOMEN PELVIS W CONTRAST", "AX 5MM PORTAL VENOUS", 8),
    "MR": Exam("MR", "MR_small.dcm", "BRAIN", "MR BRAIN WO CONTRAST", "AX T2 FSE", 6),
    "CR": Exam("CR", "RG1_UNCR.dcm", "CHEST", "XR CHEST PA", "PA", 1),
}
#: Each patient follows one care pathway: the modality of most studies, and another now and then.
PATHWAYS = (("CT", "CR"), ("MR", "CR"), ("CR", "CT"))


@dataclass(frozen=True)
class ArchiveSpec:
    """What :func:`write_archive` writes; everything follows from ``seed``."""

    patients: int = 40
    seed: int = 13
    #: slices per CT and MR series (the CR series have one image)
    ct_slices: int = 6
    mr_slices: int = 5
    #: the CR image is the template's every ``cr_step``-th row and column (1: full size, 1955 x 1841)
    cr_step: int = 3
    #: this many patients have one study written without a Patient ID (each becomes its own patient)
    without_patient_id: int = 3
    #: every ``issuer_variation_every``-th patient's older studies have an empty IssuerOfPatientID
    issuer_variation_every: int = 3


@dataclass
class StudyRecord:
    """One written study, with its original identifiers (what the lake must not contain)."""

    study_uid: str
    series_uid: str
    sop_uids: list[str]
    study_date: date
    modality: str
    body_part: str
    study_description: str
    series_description: str
    accession: str
    issuer: str  # as written ("" for the older scanner)
    has_patient_id: bool
    institution: str
    referring: str
    date_in_text: str  # the prior's date as written in AdditionalPatientHistory ("" for a baseline)


@dataclass
class PatientRecord:
    """One made-up patient and the studies written for them."""

    name: str  # DICOM PN
    patient_id: str
    birth_date: str  # YYYYMMDD
    sex: str
    address: str
    phone: str
    studies: list[StudyRecord] = field(default_factory=list)

    @property
    def identifiers(self) -> list[str]:
        family, given = self.name.split("^")[:2]
        street = self.address.split(",")[0]
        return [family, given, self.patient_id, self.birth_date, street, self.phone]


@dataclass
class Archive:
    """What :func:`write_archive` wrote: the folder, the patients, and how many files."""

    root: Path
    spec: ArchiveSpec
    patients: list[PatientRecord]
    files: int = 0

    @property
    def studies(self) -> list[StudyRecord]:
        return [s for p in self.patients for s in p.studies]

    def identifiers(self) -> list[str]:
        """Every identifier written into the archive (names, IDs, accessions, places, UIDs), for ``lake.audit``."""
        out: list[str] = []
        for p in self.patients:
            out.extend(p.identifiers)
            for s in p.studies:
                out.extend([s.accession, s.study_uid, s.series_uid, *s.sop_uids])
        out.extend(site.name for site in SITES)
        out.extend(site.address.split(",")[0] for site in SITES)
        out.extend(n.split("^")[0] for n in PHYSICIANS + TECHNOLOGISTS)
        return list(dict.fromkeys(out))


def write_archive(root: str | Path, spec: ArchiveSpec | None = None) -> Archive:
    """Write the archive under ``root`` (created; must be empty or missing) and describe it.

    Raises :class:`SourceError` if pydicom's or pydicom-data's test files are not installed, if
    ``root`` holds files, or if ``spec.patients`` is out of range.
    """
    spec = spec or ArchiveSpec()
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise SourceError(f"the archive folder {root} is not empty: give a new or empty folder")
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    patients = _plan(spec, rng)
    archive = Archive(root, spec, patients)
    for number, patient in enumerate(patients):
        archive.files += _write_patient(root, spec, number, patient)
    return archive


def _plan(spec: ArchiveSpec, rng: np.random.Generator) -> list[PatientRecord]:
    """The patients and their study dates, modalities and identifiers (nothing written yet)."""
    if not 1 <= spec.patients <= len(FAMILY_NAMES):
        raise SourceError(f"a demo archive has 1 to {len(FAMILY_NAMES)} patients, not {spec.patients}")
    families = rng.permutation(len(FAMILY_NAMES))[: spec.patients]
    mrns = rng.choice(9_000_000, size=spec.patients, replace=False) + 1_000_000
    no_id = set(rng.permutation(spec.patients)[: spec.without_patient_id].tolist())
    accession_serial = 4000
    patients = []
    for p in range(spec.patients):
        sex = "F" if rng.random() < 0.5 else "M"
        given = GIVEN_NAMES[sex][int(rng.integers(len(GIVEN_NAMES[sex])))]
        middle = chr(ord("A") + int(rng.integers(26)))
        birth = date(1938, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 60)))
        patient = PatientRecord(
            name=f"{FAMILY_NAMES[families[p]].upper()}^{given.upper()}^{middle}",
            patient_id=f"H{int(mrns[p]):07d}",
            birth_date=f"{birth:%Y%m%d}",
            sex=sex,
            address=f"{int(rng.integers(2, 990))} {STREETS[int(rng.integers(len(STREETS)))]}, "
            f"{TOWNS[int(rng.integers(len(TOWNS)))]}",
            phone=f"+1 555 01{int(rng.integers(10, 99))} {int(rng.integers(1000, 9999))}",
        )
        n_studies = int(rng.integers(3 if p in no_id else 2, 7))
        span = int(rng.integers(365, 3651))  # 1 to 10 years from the first study to the last
        first = date(2010, 1, 4) + timedelta(days=int(rng.integers(0, 365 * 6)))
        offsets = sorted({0, span, *(int(x) for x in rng.integers(1, span, size=n_studies - 2))})
        while len(offsets) < n_studies:  # two middle studies drew the same day
            offsets = sorted({*offsets, int(rng.integers(1, span))})
        pathway = PATHWAYS[p % len(PATHWAYS)]
        variation = spec.issuer_variation_every > 0 and p % spec.issuer_variation_every == 0
        missing = int(rng.integers(1, n_studies)) if p in no_id else -1  # never the baseline
        previous: dict[str, date] = {}
        for s, offset in enumerate(offsets):
            modality = pathway[0] if s == 0 or rng.random() < 0.75 else pathway[1]
            exam = EXAMS[modality]
            when = first + timedelta(days=offset)
            site = SITES[0] if rng.random() < 0.8 else SITES[1]
            accession_serial += int(rng.integers(1, 40))
            prior = previous.get(modality)
            previous[modality] = when
            uid = f"{ARCHIVE_ROOT}{p + 1}.{s + 1}"
            slices = spec.ct_slices if modality == "CT" else spec.mr_slices if modality == "MR" else exam.slices
            patient.studies.append(
                StudyRecord(
                    study_uid=uid,
                    series_uid=f"{uid}.1",
                    sop_uids=[f"{uid}.1.{i + 1}" for i in range(slices)],
                    study_date=when,
                    modality=modality,
                    body_part=exam.body_part,
                    study_description=exam.study_description,
                    series_description=exam.series_description,
                    accession=f"RA{when:%y}{accession_serial:06d}",
                    # the older scanner wrote no issuer: the first half of such a patient's studies
                    issuer="" if variation and s < n_studies // 2 else site.issuer,
                    has_patient_id=s != missing,
                    institution=site.name,
                    referring=PHYSICIANS[int(rng.integers(len(PHYSICIANS)))],
                    date_in_text="" if prior is None else f"{prior.day:02d}-{MONTHS[prior.month - 1]}-{prior.year}",
                )
            )
        patients.append(patient)
    return patients


@cache
def _template(name: str) -> tuple[Dataset, np.ndarray]:
    """A pip-shipped test file's header (without its pixel data) and its pixel array."""
    path = get_testdata_file(name, download=False)
    if not path:
        raise SourceError(
            f"the demo needs {name}, a test file of pydicom or pydicom-data: install them (pip install -e .)"
        )
    ds = dcmread(str(path))
    pixels = ds.pixel_array
    del ds.PixelData
    # the vendors' private blocks are 180 of CT_small's 260 elements: without them a file is
    # written 3x faster (the archive adds its own private block, with identifiers in it)
    ds.remove_private_tags()
    for keyword in ("OtherPatientIDsSequence", "OtherPatientIDs", "DataSetTrailingPadding", "InstanceCreatorUID"):
        if keyword in ds:
            delattr(ds, keyword)
    for _element in ds:  # convert every raw element once, not in every copy
        pass
    return ds, pixels


@cache
def _pixels(name: str, step: int) -> np.ndarray:
    arr = _template(name)[1]
    return np.ascontiguousarray(arr[::step, ::step]) if step > 1 else arr


def _write_patient(root: Path, spec: ArchiveSpec, number: int, patient: PatientRecord) -> int:
    family, given = patient.name.split("^")[:2]
    folder = root / f"{family}_{given}_{patient.patient_id}".replace(" ", "_")
    rng = np.random.default_rng([spec.seed, number])
    # the lesion: a fixed position in the patient (as a fraction of the field of view), growing over time
    lesion = (float(rng.uniform(0.25, 0.75)), float(rng.uniform(0.25, 0.75)))
    written = 0
    first = patient.studies[0].study_date
    for study in patient.studies:
        exam = EXAMS[study.modality]
        months = (study.study_date - first).days / 30.4
        study_folder = folder / f"{study.study_date:%Y%m%d}_{study.modality}_{study.accession}"
        study_folder.mkdir(parents=True)
        shift = int(rng.integers(-2, 3))  # where the table put the first slice, in slices
        time_of_day = f"{int(rng.integers(7, 18)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
        ds = _series(patient, study, exam, time_of_day)
        for i, sop_uid in enumerate(study.sop_uids):
            ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
            ds.SOPInstanceUID = sop_uid
            ds.InstanceNumber = i + 1
            if exam.slices > 1:
                _reslice(ds, exam, i + shift, lesion, growth=months / 12)
            else:
                _radiograph(ds, exam.template, spec.cr_step)
            ds.save_as(study_folder / f"IM{i + 1:05d}.dcm", enforce_file_format=True)
            written += 1
    return written


def _series(patient: PatientRecord, study: StudyRecord, exam: Exam, time_of_day: str) -> Dataset:
    """The template's header with this patient's, study's and series' values (the instance's are set per file)."""
    ds = copy.deepcopy(_template(exam.template)[0])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    # acquired images (MR_small says DERIVED SECONDARY, which burned-in-text rules quarantine)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if exam.slices > 1 else ["ORIGINAL", "PRIMARY"]
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = study.series_uid
    if "FrameOfReferenceUID" in ds:
        ds.FrameOfReferenceUID = study.series_uid + ".0"
    day = f"{study.study_date:%Y%m%d}"
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate"):
        setattr(ds, keyword, day)
    for keyword in ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "InstanceCreationTime"):
        setattr(ds, keyword, time_of_day)
    ds.PatientName = patient.name
    if study.has_patient_id:
        ds.PatientID = patient.patient_id
        ds.IssuerOfPatientID = study.issuer
    else:
        ds.PatientID = ""
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{_age(patient.birth_date, study.study_date):03d}Y"
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.phone
    ds.AccessionNumber = study.accession
    ds.StudyID = study.accession[-6:]
    ds.InstitutionName = study.institution
    ds.InstitutionAddress = next(s.address for s in SITES if s.name == study.institution)
    ds.StationName = next(s.station for s in SITES if s.name == study.institution) + "-" + exam.modality + "01"
    ds.ReferringPhysicianName = study.referring
    ds.OperatorsName = TECHNOLOGISTS[int(study.study_uid.rsplit(".", 1)[1]) % len(TECHNOLOGISTS)]
    ds.StudyDescription = study.study_description
    ds.SeriesDescription = study.series_description
    ds.ProtocolName = study.study_description
    ds.BodyPartExamined = study.body_part
    ds.SeriesNumber = 2 if exam.slices > 1 else 1
    ds.AcquisitionNumber = 1
    family, given = patient.name.split("^")[:2]
    # the MRN in the text only where the header has it: the lake cannot know a number the header never names
    mrn = f", MRN {patient.patient_id}" if study.has_patient_id else ""
    history = f"{given.title()} {family.title()}{mrn}, referred by Dr. {study.referring.split('^')[0].title()}."
    if study.date_in_text:
        history += f" Follow-up; compare with the {exam.modality} of {study.date_in_text}."
    ds.AdditionalPatientHistory = history
    ds.ImageComments = f"{exam.series_description} for {family.title()} {given.title()}"
    request = Dataset()
    request.AccessionNumber = study.accession
    request.RequestedProcedureID = "RP" + study.accession[2:]
    request.RequestedProcedureDescription = study.study_description
    request.RequestingPhysician = study.referring
    ds.RequestAttributesSequence = Sequence([request])
    block = ds.private_block(0x0029, "GHGH_RIS_01", create=True)  # what a RIS copies into its own block
    block.add_new(0x10, "LO", patient.name)
    block.add_new(0x11, "LO", patient.patient_id if study.has_patient_id else "")
    block.add_new(0x12, "SH", study.accession)
    return ds


def _age(birth: str, when: date) -> int:
    born = date(int(birth[:4]), int(birth[4:6]), int(birth[6:]))
    return when.year - born.year - ((when.month, when.day) < (born.month, born.day))


def _reslice(ds: Dataset, exam: Exam, position: int, lesion: tuple[float, float], growth: float) -> None:
    """Make ``ds`` slice ``position`` of the anatomy: the template shifted by ``position`` rows, at
    ``z0 + position * spacing``; the lesion's radius is 4% of the field of view plus ``growth`` times 2%."""
    base = _pixels(exam.template, 1)
    arr = np.roll(base, position, axis=0).copy()
    spacing = float(ds.SliceThickness)
    ipp = [float(v) for v in _template(exam.template)[0].ImagePositionPatient]
    ds.ImagePositionPatient = [f"{ipp[0]:.4f}", f"{ipp[1]:.4f}", f"{ipp[2] + position * spacing:.4f}"]
    ds.SpacingBetweenSlices = f"{spacing:.4f}"
    if "SliceLocation" in ds:
        ds.SliceLocation = f"{ipp[2] + position * spacing:.4f}"
    # the lesion is a ball centred on anatomical slice 3 (the same z in every study), 3 slices deep
    size = arr.shape[0]
    radius = size * (0.04 + 0.02 * growth) * max(0.0, 1 - abs(position - 3) / 2)
    if radius > 0:
        yy, xx = np.ogrid[:size, : arr.shape[1]]
        disc = (yy - lesion[0] * size) ** 2 + (xx - lesion[1] * arr.shape[1]) ** 2 <= radius**2
        raised = arr[disc].astype(np.int32) + 180
        arr[disc] = np.minimum(raised, np.iinfo(arr.dtype).max).astype(arr.dtype)
    ds.add_new(0x7FE00010, "OW", arr.tobytes())


def _radiograph(ds: Dataset, template: str, step: int) -> None:
    """Make ``ds`` the template radiograph, every ``step``-th row and column (pixel spacing to match)."""
    arr = _pixels(template, step)
    ds.Rows, ds.Columns = arr.shape
    ds.PixelSpacing = [f"{0.16 * step:.2f}", f"{0.16 * step:.2f}"]
    ds.ImagerPixelSpacing = ds.PixelSpacing
    ds.add_new(0x7FE00010, "OW", arr.tobytes())
