"""Shared pieces of the fault tests: a small synthetic corpus, a lake that stores its pixels, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import lake
from lake.testing.synthetic import PatientSpec, make_cohort

#: Columns that differ between runs by design.
RUN_COLUMNS = {"ingest_run", "ingested_at", "rejected_at"}


def make_corpus(root: Path, n_patients: int = 3, n_images: int = 4) -> list[PatientSpec]:
    """Synthetic patients plus two inputs that must be rejected (not DICOM, truncated)."""
    specs = make_cohort(root, n_patients=n_patients, studies_per_patient=1, n_images=n_images)
    (root / "notes.dcm").write_text("this is not a DICOM file")
    first = sorted(root.rglob("*_000.dcm"))[0]
    data = first.read_bytes()
    (root / "truncated.dcm").write_bytes(data[: len(data) - 100])  # cut inside the pixel data
    return specs


def new_lake(tmp_path: Path, name: str = "lake", keep_crosswalk: bool = False) -> tuple[Path, Path]:
    """A lake that keeps synthetic pixels (the default policy quarantines unknown burned-in risks)."""
    root, key = tmp_path / name, tmp_path / f"{name}.key"
    lake.init(root, key_file=key, burned_in_policy="keep-flagged", keep_crosswalk=keep_crosswalk)
    return root, key


def cli(*args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    """``lake ARGS`` as a real process in its own session (so a test can kill it and its workers)."""
    return subprocess.Popen(
        [sys.executable, "-m", "lake", *args],
        start_new_session=True,
        stdout=kwargs.pop("stdout", subprocess.DEVNULL),
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        **kwargs,
    )


def table_rows(root: Path, table: str) -> list[dict[str, Any]]:
    """A table's rows without the per-run columns, sorted, for comparing two lakes."""
    lk = lake.open(root)
    if table not in [p.name for p in lk.paths.tables.iterdir()]:
        return []
    frame = lk.sql(f"SELECT * FROM {table}")
    rows = [{k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in frame.to_dicts()]
    return sorted(rows, key=lambda r: repr(sorted(r.items(), key=lambda kv: kv[0])))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    make_corpus(src)
    return src
