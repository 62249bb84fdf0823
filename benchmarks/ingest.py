"""Ingest throughput: ``lake ingest`` against two floors (a bare pydicom read + decode, and a minimal
de-identification: read, walk, blank 30 identifiers, strip private tags, write) and two peers (the
``deid`` package's ``replace_identifiers`` with its default recipe, and ``dicognito``), on the same
files in one run.

    .venv/bin/python benchmarks/ingest.py [--no-shared | --shared-only] [--lake-only]

Prints files/s and MB/s of each and the ratios, with CPU seconds per file of this process and of
its worker processes (a shared machine distorts wall time, not CPU time); the 2 / 1 worker ratio is
the scaling goal of issue 17 (>= 1.7x on 2 cores). ``--lake-only`` skips the floors and the peers.
``lake`` does much more per file than either (de-identification of every element at every depth,
typed rows, DICOM JSON, lossless pixel store with read-back verification, Delta commits), so the
floor ratio says what that costs.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pydicom
from _corpus import corpus_files

from lake.ingest import ingest


def bare_pydicom(files: list[Path]) -> int:
    ok = 0
    for f in files:
        try:
            ds = pydicom.dcmread(f)
            if "PixelData" in ds:
                ds.pixel_array  # noqa: B018
            ok += 1
        except Exception:
            continue
    return ok


#: What a minimal de-identification blanks (the identifiers of PS3.15 E.1-1 most archives carry).
MINIMAL_BLANKED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientAddress", "PatientTelephoneNumbers",
    "OtherPatientIDs", "OtherPatientNames", "PatientMotherBirthName", "MedicalRecordLocator",
    "AccessionNumber", "StudyID", "InstitutionName", "InstitutionAddress", "ReferringPhysicianName",
    "PerformingPhysicianName", "OperatorsName", "NameOfPhysiciansReadingStudy", "RequestingPhysician",
    "StationName", "DeviceSerialNumber", "InstitutionalDepartmentName", "PhysiciansOfRecord",
    "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "StudyTime", "SeriesTime",
    "AcquisitionTime", "ContentTime",
)  # fmt: skip


def minimal_deidentification(files: list[Path]) -> int:
    """The floor of issue 17: read, walk every element at every depth, blank 30 identifiers, strip
    private tags, write (to memory); no pixel decode, no UIDs, no dates shifted."""
    import io

    blanked = {pydicom.datadict.tag_for_keyword(k) for k in MINIMAL_BLANKED}

    def blank(ds: pydicom.Dataset, elem: pydicom.DataElement) -> None:
        if elem.tag in blanked:
            elem.value = ""

    ok = 0
    for f in files:
        try:
            ds = pydicom.dcmread(f)
            ds.walk(blank)
            ds.remove_private_tags()
            ds.save_as(io.BytesIO(), enforce_file_format=False)
            ok += 1
        except Exception:
            continue
    return ok


def dicognito_anonymize(files: list[Path]) -> int:
    """The dicognito peer (pip ``dicognito``, ``lake[bench]``): headers only, writes DICOM (to memory)."""
    import io

    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer()
    ok = 0
    for f in files:
        try:
            ds = pydicom.dcmread(f)
            anonymizer.anonymize(ds)
            ds.save_as(io.BytesIO(), enforce_file_format=False)
            ok += 1
        except Exception:
            continue
    return ok


def deid_default_recipe(files: list[Path]) -> int:
    from deid.dicom import replace_identifiers
    from deid.logger import bot

    bot.level = 0
    logging.getLogger("deid").setLevel(logging.ERROR)
    ok = 0
    for f in files:
        try:
            replace_identifiers([str(f)], save=False)
            ok += 1
        except Exception:
            continue
    return ok


def lake_ingest(files: list[Path], workers: int) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="lake-bench-"))
    os.environ["LAKE_HOME"] = str(tmp / "home")
    src = tmp / "src"
    src.mkdir()
    for i, f in enumerate(files):  # one flat folder of links: same files, no duplicate names
        (src / f"{i:06d}").symlink_to(f)
    try:
        summary = ingest(tmp / "lake", [src], workers=workers)
        return summary.ingested + summary.duplicates
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cpu_seconds() -> tuple[float, float]:
    """CPU time of this process, and of its children that ended (the ingest's worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def measure(name: str, fn, files: list[Path], nbytes: int) -> float:  # type: ignore[no-untyped-def]
    t0, c0 = time.perf_counter(), cpu_seconds()
    ok = fn(files)
    dt, c1 = time.perf_counter() - t0, cpu_seconds()
    own, workers = ((c1[i] - c0[i]) / len(files) * 1000 for i in (0, 1))
    rate = len(files) / dt
    print(
        f"{name:<34} {len(files):6d} files ({ok:6d} ok) {dt:8.2f} s {rate:8.1f} files/s {nbytes / dt / 1e6:8.1f} MB/s"
        f"  CPU/file {own + workers:6.1f} ms ({own:.1f} this process, {workers:.1f} workers)"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-shared", action="store_true", help="only the pip-shipped files")
    parser.add_argument("--lake-only", action="store_true", help="only lake with 1 and 2 workers")
    parser.add_argument(
        "--shared-only",
        action="store_true",
        help="only ../shared/data/dicom's real scanner series (issue 17's corpus: CT and MR, few images at risk)",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    files = corpus_files(include_shared=not args.no_shared, shared_only=args.shared_only)
    if not files:
        parser.error("no files: --shared-only needs ../shared/data/dicom")
    nbytes = sum(f.stat().st_size for f in files)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"corpus: {len(files)} files, {nbytes / 1e6:.1f} MB, {os.cpu_count()} cores, load average {load}\n")
    one = measure("lake ingest --workers 1", lambda fs: lake_ingest(fs, 1), files, nbytes)
    two = measure("lake ingest --workers 2", lambda fs: lake_ingest(fs, 2), files, nbytes)
    print(f"lake 2 workers / 1 worker:       {two / one:6.2f}x (goal >= 1.7x on 2 cores)")
    if args.lake_only:
        return
    floor = measure("pydicom read + decode (floor)", bare_pydicom, files, nbytes)
    minimal = measure("minimal de-identification (floor)", minimal_deidentification, files, nbytes)
    peer = measure("deid replace_identifiers (peer)", deid_default_recipe, files, nbytes)
    cognito = None
    try:
        cognito = measure("dicognito (peer)", dicognito_anonymize, files, nbytes)
    except ImportError:
        print("dicognito (peer): not installed (pip install -e '.[bench]')")
    print()
    for label, rate in (("1 worker", one), ("2 workers", two)):
        print(f"lake ({label}) / minimal de-identification: {rate / minimal:6.2f}x (goal 1 worker >= 0.5x)")
        print(f"lake ({label}) / pydicom floor:             {rate / floor:6.2f}x")
        print(f"lake ({label}) / deid peer:                 {rate / peer:6.2f}x")
        if cognito is not None:
            print(f"lake ({label}) / dicognito peer:            {rate / cognito:6.2f}x")


if __name__ == "__main__":
    main()
