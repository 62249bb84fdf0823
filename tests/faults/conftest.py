"""Shared pieces of the fault tests: a small synthetic corpus, a lake that stores its pixels, the CLI,
an uninterrupted reference lake, and waiting for conditions (never for a time)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

import lake
from lake.ingest import ingest
from lake.maintenance.verify import verify
from lake.testing.synthetic import PatientSpec, make_cohort

#: Columns that differ between runs by design.
RUN_COLUMNS = {"ingest_run", "ingested_at", "rejected_at"}
#: Where an instance's frames sit: arrays are cut per unit of work, so two different commands that end
#: with the same rows may cut them differently (the frames still hash to the same ``pixel_sha256``).
LAYOUT_COLUMNS = {"pixel_array", "pixel_frame_start"}


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


def cli(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[bytes]:
    """``lake ARGS`` as a real process in its own session (so a test can kill it and its workers);
    ``env`` adds variables (``LAKE_CRASH_AT``... see :mod:`lake.crashpoints`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "lake", *args],
        start_new_session=True,
        stdout=kwargs.pop("stdout", subprocess.DEVNULL),
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        **kwargs,
    )


# -- `lake` in a fresh process, without paying its imports each time ------------------------------
# A CLI start imports numpy, zarr, pydicom, DuckDB, deltalake... (1.5 s of CPU), more than the
# ingest of the test corpus costs, and the fault tests start dozens. A fork server that imported
# them once forks each run instead: a new process (its own pid and session, its own workers) running
# exactly what ``python -m lake ARGS`` runs.
_FORKSERVER = multiprocessing.get_context("forkserver")
_FORKSERVER.set_forkserver_preload(["lake.cli", "lake.ingest.run", "lake.catalog.optimize", "tests.faults.conftest"])


def _lake_main(argv: list[str], env: dict[str, str], stdout: str, stderr: str) -> None:
    """The body of a forked ``lake`` process (see :class:`LakeProcess`)."""
    os.setsid()
    # as in a process of its own: started by the fork server, it would default to that start method
    # (tqdm's lock would then be a named semaphore left to the fork server's resource tracker)
    multiprocessing.set_start_method("fork", force=True)
    os.environ.clear()
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(target, fd)
        os.close(target)
    from lake import crashpoints
    from lake.cli import main

    crashpoints.configure()  # as a fresh process does at import
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class LakeProcess:
    """``lake ARGS`` forked from a server that imported lake once; the parts of ``Popen`` tests use."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str], stdout: Path | None, stderr: Path | None) -> None:
        full = {**os.environ, "PYTHONWARNINGS": "ignore", **env}
        out, err = (str(p) if p is not None else os.devnull for p in (stdout, stderr))
        self._process = _FORKSERVER.Process(target=_lake_main, args=(list(args), full, out, err), daemon=False)
        self._process.start()
        assert self._process.pid is not None
        self.pid: int = self._process.pid

    @property
    def returncode(self) -> int | None:
        """Exit status, or minus the signal that ended it (as ``Popen``); None while it runs."""
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(["lake"], timeout or 0)
        return self._process.exitcode


@contextlib.contextmanager
def running(
    *args: str, env: dict[str, str] | None = None, stdout: Path | None = None, stderr: Path | None = None
) -> Iterator[LakeProcess]:
    """``lake ARGS`` as a new process in its own session (stdout and stderr to files, or discarded);
    at the end SIGKILL to whatever of its session is left (the test's checks come first)."""
    proc = LakeProcess(args, env or {}, stdout, stderr)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


#: Instances per commit in the fault tests' ingests: 12 instances make 4 batches, and batch 2 holds
#: two pixel arrays (the last image of patient 1, the first two of patient 2).
BATCH = 3


def ingest_args(src: Path, root: Path, key: Path, workers: int = 1) -> list[str]:
    lake_args = ["--lake", str(root), "--key-file", str(key)]
    return ["ingest", str(src), *lake_args, "--workers", str(workers), "--batch-size", str(BATCH), "--no-progress"]


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Return as soon as ``condition()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up after {timeout:.0f} s waiting until {what}"
        time.sleep(0.01)


def wait_for_pause(marker: Path, proc: LakeProcess, processes: int = 1) -> list[int]:
    """The pids of the processes paused at their crash point, once ``processes`` of them are."""

    def paused() -> list[int]:
        text = marker.read_text() if marker.exists() else ""
        return [int(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def ready() -> bool:
        assert proc.poll() is None, f"lake exited with {proc.returncode} before its pause point"
        return len(paused()) >= processes

    wait_for(ready, f"{processes} process(es) paused at the crash point")
    return paused()


def pause_env(marker: Path, point: str) -> dict[str, str]:
    return {"LAKE_PAUSE_AT": point, "LAKE_PAUSE_FILE": str(marker)}


def all_gone(processes: list[psutil.Process]) -> bool:
    """True when none of ``processes`` runs any more (a zombie waiting for init to reap it is dead)."""
    for p in processes:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


@dataclass(frozen=True)
class Reference:
    """An uninterrupted ingest of :func:`make_corpus`: what every interrupted lake must end up as."""

    corpus: Path
    root: Path
    key: Path
    rows: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    base = tmp_path_factory.mktemp("reference")
    corpus = base / "src"
    make_corpus(corpus)
    root, key = new_lake(base, "reference")
    summary = ingest(root, [corpus], key_file=key, batch_size=BATCH)
    assert summary.ingested == 12 and summary.rejected == 2
    return Reference(corpus, root, key, {t: table_rows(root, t) for t in ("instances", "rejects")})


def twin_lake(tmp_path: Path, name: str, ref: Reference) -> tuple[Path, Path]:
    """A new empty lake with the reference's key, so that its pseudonyms and UIDs match."""
    root, key = new_lake(tmp_path, name)
    key.write_bytes(ref.key.read_bytes())
    ref_config = (ref.root / "lake.json").read_text()
    own_id = json.loads((root / "lake.json").read_text())["lake_id"]
    (root / "lake.json").write_text(ref_config.replace(json.loads(ref_config)["lake_id"], own_id))
    return root, key


def assert_complete(root: Path, ref: Reference, *, layout: bool = True) -> None:
    """The lake holds exactly the reference's rows and pixels, and verifies; ``layout=False`` after
    ``lake optimize``, which may move frames into merged arrays (:data:`LAYOUT_COLUMNS`)."""
    for table, rows in ref.rows.items():
        expected = rows if layout else table_rows(ref.root, table, layout=False)
        assert table_rows(root, table, layout=layout) == expected, f"{table} differs from the uninterrupted run"
    report = verify(root, record=False)
    assert report.ok, [str(p) for p in report.problems]
    assert report.counts["instances_with_pixels"] == 12


def table_rows(root: Path, table: str, *, layout: bool = True) -> list[dict[str, Any]]:
    """A table's rows without the per-run columns, sorted, for comparing two lakes.

    ``layout=False`` leaves out where the frames sit too (:data:`LAYOUT_COLUMNS`), for lakes built by
    different commands; :func:`lake.verify` then proves that the frames hash to ``pixel_sha256``."""
    lk = lake.open(root)
    if table not in [p.name for p in lk.paths.tables.iterdir()]:
        return []
    frame = lk.sql(f"SELECT * FROM {table}")
    left_out = RUN_COLUMNS if layout else RUN_COLUMNS | LAYOUT_COLUMNS
    rows = [{k: v for k, v in r.items() if k not in left_out} for r in frame.to_dicts()]
    return sorted(rows, key=lambda r: repr(sorted(r.items(), key=lambda kv: kv[0])))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    make_corpus(src)
    return src
