"""``lake ingest --scheduler``: a real ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1 (free ports, chosen by the scheduler), the same lake as a single-process ingest (tables'
content and pixels), also when one worker is killed by pid while it writes a pixel array (the moment
chosen by a pause point, never a sleep)."""

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
from tests.faults.conftest import BATCH, Reference, assert_complete, pause_env, twin_lake, wait_for

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
