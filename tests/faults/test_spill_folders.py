"""A killed optimize leaves its spill folders behind (kill -9 cannot clean up); the next command that
makes a spill folder removes them, and only those whose process is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import lake
from lake import crashpoints, memory
from lake.catalog.tables import append
from lake.testing.rows import synthetic_instances

#: Enough rows that 128 MB (the smallest budget) cuts the sort into ranges written to files:
#: ordered.SPLIT_FROM_PARTS (16) or more, at about 4.3 KB x 4 per row against 77 MB for DuckDB
#: (50,000 rows made 12 ranges).
ROWS = 80_000
SMALLEST = ("--memory-limit", "128MB")


def _spill_folders(tmp: Path) -> list[Path]:
    return sorted(p for p in tmp.iterdir() if p.name.startswith("lake-"))


def _optimize(root: Path, tmp: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "lake", "optimize", "--lake", str(root), "--force", "--no-progress", *SMALLEST],
        env={**os.environ, "TMPDIR": str(tmp), "PYTHONWARNINGS": "ignore", **(env or {})},
        capture_output=True,
        timeout=600,
    )


@pytest.fixture
def appended_lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    lk = lake.init(root)
    for chunk in synthetic_instances(ROWS, seed=5, chunk_rows=20_000):
        append(lk.paths.table("instances"), chunk)
    return root


def test_a_killed_optimize_leaves_spill_folders_the_next_run_removes(appended_lake: Path, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    killed = _optimize(appended_lake, tmp, {crashpoints.CRASH_ENV: "optimize.after_split"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    left = _spill_folders(tmp)
    # DuckDB's folder and the range files of the split, named after the dead process
    assert {p.name.split("-pid")[0] for p in left} == {"lake-optimize", "lake-optimize-ranges"}
    assert any(f.suffix == ".arrow" for p in left for f in p.iterdir())
    before = lake.open(appended_lake).sql("SELECT count(*) FROM instances").rows()

    done = _optimize(appended_lake, tmp)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert _spill_folders(tmp) == []  # the stale ones removed, this run's own removed at its end
    lk = lake.open(appended_lake)
    assert lk.sql("SELECT count(*) FROM instances").rows() == before and before[0][0] >= ROWS
    uid = lk.sql("SELECT min(SOPInstanceUID) FROM instances").rows()[0][0]
    assert lk.header(uid) is not None


def test_only_folders_of_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"lake-optimize-ranges-pid{gone.pid}-abc123_x"
    alive = tmp_path / f"lake-optimize-pid{os.getpid()}-def456_y"
    unrelated = [tmp_path / f"lake-notes-{gone.pid}", tmp_path / "other-pid1-x"]
    stray_file = tmp_path / f"lake-verify-pid{gone.pid}-ghi789_z"
    for folder in (dead, alive, *unrelated):
        folder.mkdir()
        (folder / "data").write_bytes(b"x")
    stray_file.write_bytes(b"not a folder")
    assert memory.remove_stale_spill_folders(str(tmp_path)) == [str(dead)]
    assert not dead.exists()
    assert alive.exists() and stray_file.exists() and all(p.exists() for p in unrelated)


def test_new_spill_folders_carry_the_pid_and_sweep_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"lake-sql-pid{gone.pid}-abcdefgh"
    stale.mkdir()
    with memory.private_folder("test") as folder:
        assert folder.parent == tmp_path and folder.name.startswith(f"lake-test-pid{os.getpid()}-")
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
        assert not stale.exists()
    assert not folder.exists()
