"""What the PACS source tests share: the corpus, the comparison with the folder lake, Orthanc or a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lake
from lake.sources.filters import PullOptions
from lake.testing.orthanc import OrthancUnavailable, run_orthanc
from lake.testing.synthetic import PatientSpec

#: Columns a run writes about itself or about the bytes it read (a PACS rewrites the file meta).
#: The OCR verdict columns (pixel_phi_*) are compared: sampling depends on the input only.
#: Columns of the ingest itself. A pixel array is written once per unit of work (consecutive input
#: files) and named by its content: a pull and a folder cut other units, so the same frames sit in
#: other arrays (``pixel_sha256`` and the pixels read back are compared instead).
RUN_COLUMNS = {"ingest_run", "ingested_at", "source_ref", "source_bytes", "pixel_array", "pixel_frame_start"}
PYDICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb.dcm")
FAST = PullOptions(retries=1, backoff=0.0)
REPO = Path(__file__).resolve().parents[2]
#: The lake's AE title in the tests' DIMSE pulls (Orthanc knows it at the move port).
LAKE_AET = "LAKE"


@dataclass
class Corpus:
    src: Path
    specs: list[PatientSpec]
    key_file: Path
    folder_lake: Path

    def files(self) -> list[Path]:
        return sorted(p for p in self.src.rglob("*") if p.is_file())


def orthanc_or_skip(base: Path, settings: dict[str, Any] | None = None) -> Any:
    try:
        return run_orthanc(base, settings)
    except OrthancUnavailable as exc:  # raised on entering, by the tool check
        pytest.skip(str(exc))


def rows(root: Path, key_file: Path) -> dict[str, dict[str, Any]]:
    lk = lake.open(root, key_file=key_file)
    found = lk.sql("SELECT * FROM instances").to_dicts()
    return {r["SOPInstanceUID"]: {k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in found}


def assert_same_lake(root: Path, corpus: Corpus) -> None:
    got, want = rows(root, corpus.key_file), rows(corpus.folder_lake, corpus.key_file)
    assert sorted(got) == sorted(want)
    for sop, row in want.items():
        assert got[sop] == row, sop
    pulled = lake.open(root, key_file=corpus.key_file)
    folder = lake.open(corpus.folder_lake, key_file=corpus.key_file)
    for sop in want:
        if want[sop]["pixel_status"] == "stored":
            assert np.array_equal(pulled.pixels(sop), folder.pixels(sop)), sop


def lake_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def kill_mid_pull_and_rerun(
    url: str, root: Path, corpus: Corpus, after_kill: Callable[[], None] | None = None, commits: int = 2
) -> None:
    """``lake ingest URL`` (batches of four, one worker) killed with ``kill -9`` after its
    ``commits``-th ``instances`` commit, ``after_kill()`` (a check of what the killed pull left), the
    same command again: the rerun must skip the studies (of two instances) of every commit before
    the killed one (the pull remembers a study once its commit is done) and give the lake of the
    same files ingested from a folder."""
    cmd = [sys.executable, "-m", "lake", "ingest", url, "--lake", str(root)]
    cmd += ["--key-file", str(corpus.key_file), "--batch-size", "4", "--workers", "1", "--no-progress"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path]),
        "LAKE_CRASH_AT": f"ingest.after_instances:{commits}",
    }
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert len(rows(root, corpus.key_file)) == 4 * commits  # batches of four
    if after_kill is not None:
        after_kill()
    del env["LAKE_CRASH_AT"]
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"skipped {2 * (commits - 1)}," in rerun.stdout, rerun.stdout  # studies committed before the kill
    assert_same_lake(root, corpus)
