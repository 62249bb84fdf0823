"""One corpus, its folder lake and one Orthanc loaded with it, for every PACS source test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from pydicom.data import get_testdata_file

import lake
from lake.ingest import ingest
from lake.testing.orthanc import Orthanc, OrthancUnavailable, dcmsend, free_port, modalities, run_orthanc
from lake.testing.synthetic import make_cohort
from tests.sources.helpers import LAKE_AET, PYDICOM_FILES, Corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    base = tmp_path_factory.mktemp("pacs-corpus")
    src = base / "src"
    specs = make_cohort(src, n_patients=2, studies_per_patient=2, n_images=3)
    for name in PYDICOM_FILES:
        path = get_testdata_file(name, download=False)
        if path:
            shutil.copy(str(path), src / name)
    key_file = base / "keys" / "lake.key"
    lake.init(base / "folder-lake", key_file=key_file)
    ingest(base / "folder-lake", [src], key_file=key_file)
    return Corpus(src, specs, key_file, base / "folder-lake")


@pytest.fixture(scope="session")
def move_port() -> int:
    """Where the lake's C-MOVE storage SCP listens in the tests (Orthanc knows LAKE_AET there)."""
    return free_port()


@pytest.fixture(scope="session")
def loaded(corpus: Corpus, move_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """An Orthanc holding the corpus (not modified by the tests that use it)."""
    try:
        with run_orthanc(tmp_path_factory.mktemp("orthanc"), modalities((LAKE_AET, move_port))) as server:
            dcmsend(server, corpus.files())
            yield server
    except OrthancUnavailable as exc:
        pytest.skip(str(exc))
