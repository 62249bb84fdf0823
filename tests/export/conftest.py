"""One small lake per session for the export tests: two synthetic CT patients, pydicom's CT, MR and
RGB secondary capture."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

import lake
from lake.ingest import ingest
from lake.keys import LakeKey, read_key
from lake.testing.synthetic import PatientSpec, make_cohort

PYDICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm")


@dataclass
class ExportLake:
    root: Path
    key_file: Path
    src: Path
    specs: list[PatientSpec]

    def open(self) -> lake.Lake:
        return lake.open(self.root, key_file=self.key_file)

    @property
    def key(self) -> LakeKey:
        return read_key(self.key_file)

    def sources(self) -> dict[str, Path]:
        """Lake SOPInstanceUID -> the source file it came from."""
        key = self.key
        return {key.uid(str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)): p for p in self.src.rglob("*.dcm")}


@pytest.fixture(scope="session")
def export_lake(tmp_path_factory: pytest.TempPathFactory) -> ExportLake:
    base = tmp_path_factory.mktemp("export-lake")
    src = base / "src"
    specs = make_cohort(src, n_patients=2, studies_per_patient=1, n_images=3)
    for name in PYDICOM_FILES:
        path = get_testdata_file(name, download=False)
        if path:
            shutil.copy(str(path), src / name)
    key_file = base / "keys" / "lake.key"
    lake.init(base / "lake", key_file=key_file)
    ingest(base / "lake", [src], key_file=key_file, workers=1)
    return ExportLake(base / "lake", key_file, src, specs)
