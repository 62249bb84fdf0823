"""A longitudinal lake built once per session (``lake.testing.longitudinal``); tests that change a
lake work on a copy (lake, key and vault)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import lake
from lake.config import vault_dir
from lake.ingest import ingest
from lake.keys import LakeKey, read_key
from lake.testing.longitudinal import PatientPlan, standard_plans, write_plans


@dataclass
class Built:
    root: Path
    key_file: Path
    plans: dict[str, PatientPlan]

    def open(self) -> lake.Lake:
        return lake.open(self.root, key_file=self.key_file)

    @property
    def key(self) -> LakeKey:
        return read_key(self.key_file)

    def pseudonym(self, label: str) -> str:
        return self.key.pseudonym("", self.plans[label].spec.patient_id)

    def study_uids(self, label: str) -> list[str]:
        """The lake's StudyInstanceUIDs of a patient's planned studies, in plan order."""
        return [self.key.uid(u) for u in self.plans[label].study_uids]

    def copy(self, where: Path) -> Built:
        root, key_file = where / "lake", where / "keys" / "lake.key"
        shutil.copytree(self.root, root)
        key_file.parent.mkdir(parents=True)
        shutil.copy2(self.key_file, key_file)
        if vault_dir(self.key_file).is_dir():
            shutil.copytree(vault_dir(self.key_file), vault_dir(key_file))
        return Built(root, key_file, self.plans)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("longitudinal")
    plans = standard_plans()
    write_plans(base / "src", plans)
    key_file = base / "keys" / "lake.key"
    lake.init(base / "lake", key_file=key_file)
    ingest(base / "lake", [base / "src"], key_file=key_file, workers=1)
    return Built(base / "lake", key_file, {p.label: p for p in plans})


@pytest.fixture
def own(built: Built, tmp_path: Path) -> Built:
    """A copy of the built lake, its key and vault, for a test that changes them."""
    return built.copy(tmp_path)
