"""The storage layer on a local folder: the conformance suite, plus what only a folder has."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lake.storage import LocalStorage, open_storage
from lake.testing.storage import StorageTests


class TestLocalStorage(StorageTests):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> LocalStorage:
        return LocalStorage(tmp_path / "lake")


def test_a_write_in_progress_is_invisible(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("tables/a", b"1")
    (tmp_path / "tables" / ".b.0123456789ab.tmp").write_bytes(b"half")  # a writer killed mid-write
    assert [i.path for i in storage.list()] == ["tables/a"]


def test_open_storage_tells_folders_from_urls(tmp_path: Path) -> None:
    assert isinstance(open_storage(tmp_path), LocalStorage)
    assert isinstance(open_storage(f"file://{tmp_path}"), LocalStorage)
    assert open_storage(tmp_path).local_path("x/y") == tmp_path / "x" / "y"
    assert open_storage("s3://bucket/prefix").local_path("x") is None


def test_files_written_are_complete_and_durable(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("a/b/c", b"x" * 100_000)
    assert os.path.getsize(tmp_path / "a" / "b" / "c") == 100_000
    assert not [p for p in (tmp_path / "a" / "b").iterdir() if p.name.endswith(".tmp")]
