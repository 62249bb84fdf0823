from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

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
