"""``lake ingest --scheduler``: a real ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1 (free ports, chosen by the scheduler), the same lake as a single-process ingest (tables'
content and pixels), also when one worker is killed by pid while it writes a pixel array, and when
the client (the ``lake ingest`` process) or the scheduler with its workers is killed after a
commit and the same command runs again (the moments chosen by pause points, never a sleep)."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import lake
from lake.config import DeidSettings
from lake.errors import ClusterError, ConfigError
from lake.ingest import ingest
from lake.ingest.work import WorkerSpec
from lake.keys import LakeKey
from tests.faults.conftest import (
    BATCH,
    Reference,
    assert_complete,
    pause_env,
    running,
    table_rows,
    twin_lake,
    wait_for,
    wait_for_pause,
)

distributed = pytest.importorskip("distributed")
DASK = Path(sys.executable).with_name("dask")


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]


def _worker(scheduler_file: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    args = [str(DASK), "worker", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1"]
    args += ["--nthreads", "1", "--no-nanny", "--no-dashboard", "--memory-limit", "2GB"]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def dask_cluster(tmp_path: Path, first_worker_env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A scheduler and two workers (the first with extra environment); all stopped by pid at the end."""
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    scheduler = subprocess.Popen(
        [*args, "--scheduler-file", str(scheduler_file)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    started = [scheduler]
    try:
        wait_for(lambda: scheduler_file.is_file() and scheduler_file.stat().st_size > 0, "the scheduler is up", 120)
        address = json.loads(scheduler_file.read_text())["address"]
        workers = [_worker(scheduler_file, {**env, **(first_worker_env or {})}), _worker(scheduler_file, env)]
        started += workers
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield Cluster(address, scheduler, workers)
    finally:
        for proc in reversed(started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def assert_same_pixels(root: Path, ref: Reference) -> None:
    """Every instance's frames read back equal to the single-process lake's."""
    ours, theirs = lake.open(root), lake.open(ref.root)
    uids = theirs.sql("SELECT SOPInstanceUID FROM instances WHERE pixel_array IS NOT NULL")["SOPInstanceUID"]
    assert len(uids) == 12
    for uid in uids:
        assert np.array_equal(ours.pixels(uid), theirs.pixels(uid))


def test_a_cluster_ingest_equals_a_single_process_ingest(tmp_path: Path, reference: Reference) -> None:
    root, key = twin_lake(tmp_path, "dask", reference)
    files: list[int] = []
    with dask_cluster(tmp_path) as dask:
        summary = ingest(
            root, [reference.corpus], key_file=key, batch_size=BATCH, scheduler=dask.address, on_file=files.append
        )
    assert (summary.seen, summary.ingested, summary.rejected) == (14, 12, 2)
    assert len(files) == 14  # progress as on one machine: once per input file
    assert_complete(root, reference)  # tables' content (array names and offsets too), checksums
    assert_same_pixels(root, reference)
    assert not (root / "pixels" / ".writing").exists()


def test_a_worker_killed_while_it_writes_pixels_costs_nothing(tmp_path: Path, reference: Reference) -> None:
    root, key = twin_lake(tmp_path, "dask-killed", reference)
    marker = tmp_path / "paused"
    # the first worker stops in its first pixel write, between the frames and their rename
    with dask_cluster(tmp_path, pause_env(marker, "pixels.before_checksums:1")) as dask:
        victim = dask.workers[0]
        killed: list[int] = []

        def kill_when_paused() -> None:
            wait_for(lambda: marker.is_file() and marker.read_text().endswith("\n"), "the worker paused", timeout=120)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=30)
            killed.append(victim.pid)

        killer = threading.Thread(target=kill_when_paused, daemon=True)
        killer.start()
        summary = ingest(root, [reference.corpus], key_file=key, batch_size=BATCH, scheduler=dask.address)
        killer.join(timeout=120)
        assert killed == [victim.pid] and dask.workers[1].poll() is None
    assert (summary.ingested, summary.rejected) == (12, 2)
    assert_complete(root, reference)
    assert_same_pixels(root, reference)
    assert not (root / "pixels" / ".writing").exists()  # the dead worker's half-built array went


def test_the_key_travels_in_the_plugin_never_in_what_tasks_carry(tmp_path: Path) -> None:
    from lake.ingest.cluster import LakeWorkerPlugin

    key = LakeKey(os.urandom(32))
    spec = WorkerSpec(settings=DeidSettings(), pixels=tmp_path, shard_frames=64, codec="auto", run_id="R1")
    assert key.secret not in pickle.dumps(spec)  # what every worker's state is built from, beside the key
    plugin = LakeWorkerPlugin(spec, key.secret)
    assert key.secret in pickle.dumps(plugin) and key.secret.hex() not in repr(plugin)


def test_bad_scheduler_addresses_are_refused_before_any_write(
    tmp_path: Path, reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lake.ingest import cluster

    root, key = twin_lake(tmp_path, "nowhere", reference)
    for bad in ("127.0.0.1:1", "tcp://127.0.0.1", "tcp://:8786"):
        with pytest.raises(ConfigError, match="tcp://HOST:PORT"):
            ingest(root, [reference.corpus], key_file=key, scheduler=bad)
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2)
    with pytest.raises(ClusterError, match="no Dask scheduler"):
        ingest(root, [reference.corpus], key_file=key, scheduler="tcp://127.0.0.1:1")
    assert not list((root / "tables").rglob("*.parquet"))


_ALL_READ = threading.Event()  # set once run_on_cluster has read every unit
_SUBMITTED: list[str] = []  # the units' tags, in the order they were submitted


def _released_in_turn(files: list[bytes]) -> list[str]:
    """A task that finishes once every unit has been read ahead and the unit submitted after the
    next one is submitted too: one slot frees before each submission, so the order submitted
    depends on the choice alone, never on which task the client sees finish first."""
    tag = files[0].decode()
    assert _ALL_READ.wait(timeout=120)
    wait_for(lambda: len(_SUBMITTED) >= min(12, _SUBMITTED.index(tag) + 2), "the next submission", 120)
    return [data.decode() for data in files]


def test_the_costliest_unit_read_ahead_is_submitted_first_on_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a real Dask scheduler and worker (in this process, so that a task can wait for the test):
    results are handled in input order, and every unit submitted is the oldest unit not yet handled
    when that one waits, else the costliest unit read ahead (the earliest of equals). 12 units are
    read ahead while the first two run (2 in flight); each task is released by a condition."""
    from lake.ingest import cluster

    _ALL_READ.clear()
    _SUBMITTED.clear()
    monkeypatch.setattr(cluster, "_run_on_worker", _released_in_turn)
    weights = {11: 9.0, 7: 3.0}
    read: list[int] = []
    handled: list[tuple[int, object]] = []
    choices: list[tuple[int, int]] = []  # (unit submitted, the unit the rule names)

    def units() -> Iterator[tuple[int, list[bytes]]]:
        for n in range(12):
            read.append(n)
            yield n, [str(n).encode()]
        _ALL_READ.set()  # asked for more: every unit is in the window

    def rule() -> int:
        waiting = [n for n in read if str(n) not in _SUBMITTED]
        oldest = min(set(read) - {tag for tag, _ in handled})
        return oldest if oldest in waiting else min(waiting, key=lambda n: (-weights.get(n, 0.0), n))

    spec = WorkerSpec(settings=DeidSettings(), pixels=tmp_path, shard_frames=64, codec="auto", run_id="R1")
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as local,
        distributed.Client(local) as client,
    ):
        real_submit = client.submit

        def recording_submit(fn: object, files: list[bytes], **kwargs: object) -> object:
            choices.append((int(files[0].decode()), rule()))
            _SUBMITTED.append(files[0].decode())
            return real_submit(fn, files, **kwargs)

        monkeypatch.setattr(client, "submit", recording_submit)
        key = LakeKey(os.urandom(32))
        record = lambda tag, result: handled.append((tag, result))  # noqa: E731
        cluster.run_on_cluster(client, spec, key, units(), record, in_flight=2, weigh=lambda n: weights.get(n, 0.0))
    assert handled == [(n, [str(n)]) for n in range(12)]
    assert sorted(map(int, _SUBMITTED)) == list(range(12))
    assert all(unit == named for unit, named in choices), choices
    assert _SUBMITTED.index("11") < _SUBMITTED.index("3") and _SUBMITTED.index("7") < _SUBMITTED.index("4")


def _cluster_args(root: Path, key: Path, corpus: Path, address: str) -> list[str]:
    args = ["ingest", str(corpus), "--lake", str(root), "--key-file", str(key), "--batch-size", str(BATCH)]
    return [*args, "--no-progress", "--scheduler", address]


def _idle(address: str) -> bool:
    """No task of the cluster is running or waiting (what a killed client submitted has ended)."""
    with distributed.Client(address, timeout=60) as client:
        return not any(client.processing().values())


def test_the_client_killed_midway_then_the_same_command_gives_the_same_lake(
    tmp_path: Path, reference: Reference
) -> None:
    root, key = twin_lake(tmp_path, "dask-client", reference)
    marker = tmp_path / "paused"
    with dask_cluster(tmp_path) as dask:
        args = _cluster_args(root, key, reference.corpus, dask.address)
        with running(*args, env=pause_env(marker, "ingest.after_instances:1")) as proc:
            wait_for_pause(marker, proc)  # the client, after its first batch's commit
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        committed = table_rows(root, "instances")
        assert 0 < len(committed) < 12 and all(row in reference.rows["instances"] for row in committed)
        wait_for(lambda: _idle(dask.address), "the tasks the killed client left have ended", timeout=120)
        ingest(root, [reference.corpus], key_file=key, batch_size=BATCH, scheduler=dask.address)
    assert_complete(root, reference)
    assert_same_pixels(root, reference)


def test_the_scheduler_killed_midway_then_the_same_command_gives_the_same_lake(
    tmp_path: Path, reference: Reference
) -> None:
    root, key = twin_lake(tmp_path, "dask-scheduler", reference)
    marker, err = tmp_path / "paused", tmp_path / "err.txt"
    (tmp_path / "first").mkdir()
    with dask_cluster(tmp_path / "first") as dask:
        args = _cluster_args(root, key, reference.corpus, dask.address)
        with running(*args, env=pause_env(marker, "ingest.after_instances:1"), stderr=err) as proc:
            wait_for_pause(marker, proc)
            for victim in [dask.scheduler, *dask.workers]:  # the whole cluster goes, by pid
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(timeout=30)
            marker.unlink()  # the client goes on, and finds no scheduler
            assert proc.wait(timeout=300) not in (0, -signal.SIGKILL)
    stderr = err.read_text()
    assert "Traceback" not in stderr and "the Dask cluster failed" in stderr and "run the ingest again" in stderr
    committed = table_rows(root, "instances")
    assert 0 < len(committed) < 12 and all(row in reference.rows["instances"] for row in committed)
    (tmp_path / "second").mkdir()
    with dask_cluster(tmp_path / "second") as dask:  # a new cluster, the same command
        ingest(root, [reference.corpus], key_file=key, batch_size=BATCH, scheduler=dask.address)
    assert_complete(root, reference)
    assert_same_pixels(root, reference)
