"""``kill -9`` of the ingest's own pid (not its process group: what a user, a scheduler or the OOM
killer does): its worker processes end too, wherever they are, and the same command completes the lake."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from lake import crashpoints
from tests.faults.conftest import (
    Reference,
    all_gone,
    assert_complete,
    ingest_args,
    pause_env,
    running,
    table_rows,
    twin_lake,
    wait_for,
    wait_for_pause,
)

WORKERS = 2
FILES = 14  # make_corpus: 12 instances and 2 rejects, each handed to a worker

#: moment -> (where the run pauses, how many processes pause there)
MOMENTS = {
    # each worker stops inside its second file; the ingest waits for their results
    "workers busy on files": ("ingest.worker_file:2", WORKERS),
    # the ingest commits its last batch; every file was handed out, the workers wait for more
    "workers idle between batches": ("ingest.flush:4", 1),
    # the ingest is between two commits of a batch (its rejects committed, its instances not)
    "during the commit": ("ingest.after_rejects:1", 1),
}


def _worker_files_started(trace: Path) -> int:
    text = trace.read_text() if trace.exists() else ""
    return sum(line.startswith("ingest.worker_file ") for line in text.splitlines())


@pytest.mark.parametrize("moment", MOMENTS)
def test_workers_end_with_the_ingest_and_the_rerun_completes(tmp_path: Path, reference: Reference, moment: str) -> None:
    point, paused = MOMENTS[moment]
    root, key = twin_lake(tmp_path, "orphans", reference)
    marker, trace = tmp_path / "paused", tmp_path / "trace"
    args = ingest_args(reference.corpus, root, key, workers=WORKERS)
    env = {**pause_env(marker, point), crashpoints.TRACE_ENV: str(trace)}
    with running(*args, env=env) as proc:
        pids = wait_for_pause(marker, proc, paused)
        workers = psutil.Process(proc.pid).children(recursive=True)
        # the run is the ingest and its workers, no other helper process (resource tracker...)
        assert len(workers) == WORKERS and all(w.ppid() == proc.pid for w in workers)
        if moment == "workers busy on files":
            assert set(pids) == {w.pid for w in workers}
        if moment == "workers idle between batches":
            wait_for(lambda: _worker_files_started(trace) == FILES, "every file was handed to a worker")
            wait_for(lambda: all(w.status() == psutil.STATUS_SLEEPING for w in workers), "the workers wait")
        os.kill(proc.pid, signal.SIGKILL)  # the ingest alone, as `kill -9 <pid>`
        assert proc.wait(timeout=30) == -signal.SIGKILL
        wait_for(lambda: all_gone(workers), "no worker of the killed ingest runs", timeout=5)
        marker.unlink()
    committed = table_rows(root, "instances")
    assert all(row in reference.rows["instances"] for row in committed)
    with running(*args) as rerun:
        assert rerun.wait(timeout=120) == 0
    assert_complete(root, reference)
