"""Ctrl-C and SIGTERM during ``lake ingest`` and ``lake optimize``: no traceback, the run recorded as
``interrupted`` with what it committed, exit status 130 / 143, no process left, and the same command
completes the lake. Signals are sent while the run is paused at a named point, never after a sleep."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

import lake
from lake.interrupts import Interrupted, deferred, signals_raise
from tests.faults.conftest import (
    BATCH,
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

MESSAGE = "lake ingest: interrupted; {n} instances committed; run the same command again to complete it"

#: case -> (signal, sent to the process group as a terminal does or to the ingest alone, pause point,
#: instances committed when it stops: None where that depends on how far the workers got)
CASES = {
    # Ctrl-C in the terminal reaches every process of the group, here while batch 2 is being
    # committed: the commit completes (never half a batch), then the run stops
    "ctrl-c during a commit": (signal.SIGINT, "group", "ingest.after_pixels:2", 2 * BATCH),
    # a scheduler stops the ingest while its workers are busy: it stops at once
    "sigterm while workers are busy": (signal.SIGTERM, "ingest", "ingest.worker_file:3", None),
}


def _runs(root: Path) -> list[dict[str, object]]:
    return lake.open(root).sql("SELECT operation, outcome, counts FROM runs ORDER BY started_at").to_dicts()


@pytest.mark.parametrize("case", CASES)
def test_an_interrupted_ingest_is_recorded_and_the_rerun_completes(
    tmp_path: Path, reference: Reference, case: str
) -> None:
    signum, target, point, expected = CASES[case]
    root, key = twin_lake(tmp_path, "interrupted", reference)
    marker, out, err = tmp_path / "paused", tmp_path / "out.txt", tmp_path / "err.txt"
    args = ingest_args(reference.corpus, root, key, workers=2)
    with running(*args, env=pause_env(marker, point), stdout=out, stderr=err) as proc:
        wait_for_pause(marker, proc)
        workers = psutil.Process(proc.pid).children(recursive=True)
        (os.killpg if target == "group" else os.kill)(proc.pid, signum)
        marker.unlink()  # let it go on: a signal held during a commit is acted on after it
        assert proc.wait(timeout=60) == 128 + signum
        wait_for(lambda: all_gone(workers), "no worker of the interrupted ingest runs", timeout=5)
    committed = len(table_rows(root, "instances"))
    if expected is not None:
        assert committed == expected
    stderr = err.read_text()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert stderr.splitlines()[-1] == MESSAGE.format(n=committed)
    assert out.read_text() == ""  # no summary of a run that did not finish
    [row] = _runs(root)
    counts = json.loads(str(row["counts"]))
    assert (row["operation"], row["outcome"], counts["outcome"]) == ("ingest", "interrupted", "interrupted")
    assert counts["ingested"] == committed
    assert counts["seen"] == counts["ingested"] + counts["duplicates"] + counts["rejected"] + counts["abandoned"]
    with running(*args) as rerun:
        assert rerun.wait(timeout=120) == 0
    assert_complete(root, reference)
    assert [r["outcome"] for r in _runs(root)] == ["interrupted", "partial"]


def test_an_interrupted_optimize_is_recorded_and_the_rerun_completes(tmp_path: Path, reference: Reference) -> None:
    from lake.ingest import ingest

    root, key = twin_lake(tmp_path, "optimized", reference)
    ingest(root, [reference.corpus], key_file=key, batch_size=BATCH)
    marker, err = tmp_path / "paused", tmp_path / "err.txt"
    args = ("optimize", "--lake", str(root), "--no-progress")
    # SIGTERM after the instances table is rewritten, before the rejects are
    with running(*args, env=pause_env(marker, "optimize.after_commit:1"), stderr=err) as proc:
        wait_for_pause(marker, proc)
        os.kill(proc.pid, signal.SIGTERM)
        marker.unlink()
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    stderr = err.read_text()
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1].startswith("lake optimize: interrupted;")
    assert "run the same command again to complete it" in stderr
    assert [(r["operation"], r["outcome"]) for r in _runs(root)] == [("ingest", "partial"), ("optimize", "interrupted")]
    # the small pixel arrays were merged first: where frames sit may differ, not the frames (verified below)
    assert {t: table_rows(root, t, layout=False) for t in reference.rows} == {
        t: table_rows(reference.root, t, layout=False) for t in reference.rows
    }
    with running(*args) as rerun:
        assert rerun.wait(timeout=120) == 0
    assert [r["outcome"] for r in _runs(root)][-1] == "ok"
    assert lake.open(root).sql("SELECT count(*) FROM header_index")[0, 0] == 12
    assert_complete(root, reference, layout=False)


def test_a_signal_during_a_deferred_section_is_raised_at_its_end() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    reached_end = False
    with pytest.raises(Interrupted) as caught, signals_raise():
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), "no handler: SIGTERM would kill pytest"
        with deferred():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, and holds it
            reached_end = True
    assert reached_end and caught.value.signum == signal.SIGTERM and caught.value.exit_code == 143
    assert {s: signal.getsignal(s) for s in before} == before  # the handlers are put back


def _interrupt_self(data: bytes) -> int:
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C reaches every process of the terminal's group
    os.kill(os.getpid(), signal.SIGTERM)
    return len(data)


def test_workers_ignore_ctrl_c_and_sigterm() -> None:
    """The parent alone decides what a signal means: a worker neither dies nor prints a traceback."""
    from lake.ingest.pool import TimedPool

    pool = TimedPool(_interrupt_self, workers=1, timeout=30)
    assert dict(pool.run([(0, b"a"), (1, b"bb")])) == {0: 1, 1: 2}
    assert pool.restarts == 0
