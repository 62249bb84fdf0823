from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings
from pydicom.data import get_testdata_file

# The suite is deterministic: property tests draw the same examples on every run (a red CI is a
# defect found, reproducible from a clean clone, never luck). LAKE_HYPOTHESIS=explore draws new
# examples on each run, to look for more; a failure found that way becomes a regression test.
settings.register_profile("lake", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile("explore" if os.environ.get("LAKE_HYPOTHESIS") == "explore" else "lake")

SHARED_DICOM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dicom"


@pytest.fixture(autouse=True)
def lake_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keys and vaults of every test go to a temporary LAKE_HOME, never the user's."""
    home = tmp_path_factory.mktemp("lake-home")
    monkeypatch.setenv("LAKE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def pydicom_files_dir() -> Path:
    path = get_testdata_file("CT_small.dcm", download=False)
    assert path, "pydicom's test files are missing"
    return Path(str(path)).parent


@pytest.fixture(scope="session")
def pydicom_data_dir() -> Path:
    path = get_testdata_file("693_J2KR.dcm", download=False)
    if not path:
        pytest.skip("pydicom-data is not installed")
    return Path(str(path)).parent


def testdata(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if not path:
        pytest.skip(f"test file {name} not available")
    return Path(str(path))


def shared_dicom(sub: str) -> Path:
    path = SHARED_DICOM / sub
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path
