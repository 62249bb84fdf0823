"""kill -9 of ``lake ingest`` and ``lake optimize`` at every named crash point of their write paths
(:mod:`lake.crashpoints`), then the same command: the lake equals an uninterrupted run's. Two ingests
at once: the second waits on the lock, then both complete."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import lake
from lake import crashpoints
from lake.catalog.optimize import optimize
from lake.ingest import ingest
from lake.maintenance.verify import verify
from tests.faults.conftest import (
    BATCH,
    Reference,
    assert_complete,
    ingest_args,
    running,
    table_rows,
    twin_lake,
    wait_for,
)

#: Where ``lake ingest`` is killed, as ``point:n`` (the n-th time the point is reached). With
#: BATCH = 3 the 12 instances are committed in 4 batches; the two rejects in one.
INGEST_POINTS = [
    "ingest.after_array:2",  # batch 2: its first pixel array written, the second not yet
    "pixels.before_checksums:3",  # batch 2: second array's frames written, its checksums not
    "ingest.after_pixels:2",  # batch 2: all pixels written, no row committed
    "ingest.after_rejects:1",  # the rejects committed, the instances of their batch not
    "ingest.after_instances:2",  # batch 2 committed, its table checksums not recorded
    "ingest.after_fixity:3",  # batch 3 complete
    "ingest.before_runs_row:1",  # every row committed, the run not in the audit
    "runs.after_append:1",  # the runs row committed, its checksum not recorded
]
#: Where ``lake optimize`` is killed: instances, rejects, then the header index are each rewritten
#: (files, then one commit), then the range map, then the runs row.
OPTIMIZE_POINTS = [
    "optimize.after_file:1",  # instances' new file written, not committed
    "optimize.after_commit:1",  # instances rewritten, rejects not
    "optimize.before_commit:3",  # header index written, not committed
    "optimize.before_ranges:1",  # header index committed, its range map stale
    "optimize.before_series_covers:1",  # series summary committed, its coverage map stale
    "optimize.before_runs_row:1",
    "runs.after_append:1",
]
#: Points reached on these paths that no test above kills at, and why.
NOT_KILLED_AT = {
    "ingest.flush": "the start of a batch's commit: the lake is as at ingest.after_fixity of the batch before",
    "ingest.worker_file": "in a worker process: tests/faults/test_orphans.py and test_interrupt.py pause there",
    **{
        f"merge.{step}": "the merge of small pixel arrays: tests/pixels/test_merge.py kills optimize there"
        for step in ("after_array", "before_commit")
    },
}


def _name(point: str) -> str:
    return point.partition(":")[0]


def test_every_point_of_the_write_paths_is_tested(tmp_path: Path, reference: Reference) -> None:
    """The lists above name every point an ingest and an optimize reach, each reached often enough."""
    trace = tmp_path / "trace.txt"
    root, key = twin_lake(tmp_path, "traced", reference)
    crashpoints.configure({crashpoints.TRACE_ENV: str(trace)})
    try:
        ingest(root, [reference.corpus], key_file=key, batch_size=BATCH, workers=2, file_timeout=60)
        ingest_reached = Counter(line.split()[0] for line in trace.read_text().splitlines())
        trace.unlink()
        optimize(root)
        optimize_reached = Counter(line.split()[0] for line in trace.read_text().splitlines())
    finally:
        crashpoints.configure({})
    for points, reached in ((INGEST_POINTS, ingest_reached), (OPTIMIZE_POINTS, optimize_reached)):
        for point in points:
            name, _, nth = point.partition(":")
            assert reached[name] >= int(nth), f"{point}: reached only {reached[name]} time(s)"
    tested = {_name(p) for p in INGEST_POINTS + OPTIMIZE_POINTS}
    assert set(ingest_reached) | set(optimize_reached) == tested | set(NOT_KILLED_AT)


def test_crash_settings_are_checked() -> None:
    for bad in ({"LAKE_CRASH_AT": "ingest.flush:0"}, {"LAKE_CRASH_AT": ":2"}, {"LAKE_PAUSE_AT": "ingest.flush"}):
        with pytest.raises(ValueError, match="LAKE_"):
            crashpoints.configure(bad)
    crashpoints.configure({})


@pytest.mark.parametrize("point", INGEST_POINTS)
def test_kill_minus_nine_at_each_point_then_rerun_equals_uninterrupted(
    tmp_path: Path, reference: Reference, point: str
) -> None:
    root, key = twin_lake(tmp_path, "crashed", reference)
    args = ingest_args(reference.corpus, root, key)
    with running(*args, env={crashpoints.CRASH_ENV: point}) as proc:
        assert proc.wait(timeout=120) == -signal.SIGKILL, f"the ingest ended without reaching {point}"
    # readers see whole batches of the uninterrupted run, never part of one
    committed = table_rows(root, "instances")
    assert all(row in reference.rows["instances"] for row in committed)
    assert len(committed) % BATCH == 0
    # the same command again completes the lake
    ingest(root, [reference.corpus], key_file=key, batch_size=BATCH)
    assert_complete(root, reference)


def test_concurrent_ingests_wait_on_the_lock_and_never_corrupt(tmp_path: Path, reference: Reference) -> None:
    from lake.lock import write_lock

    corpus = reference.corpus
    root, key = twin_lake(tmp_path, "shared", reference)
    halves = [corpus / p.name for p in sorted(corpus.iterdir()) if p.is_dir()]
    errs = [tmp_path / "err0.txt", tmp_path / "err1.txt"]
    # one ingests everything, the other one of the three patients: they overlap
    args = [ingest_args(corpus, root, key), ingest_args(halves[0], root, key)]
    with contextlib.ExitStack() as stack:
        with write_lock(root / ".lock"):  # hold the lock so that both must wait
            procs = [stack.enter_context(running(*a, stderr=e)) for a, e in zip(args, errs, strict=True)]
            wait = lambda: all(e.exists() and "waiting" in e.read_text() for e in errs)  # noqa: E731
            wait_for(wait, "both ingests report that they wait")
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert all(f"process {os.getpid()} is writing to this lake" in e.read_text() for e in errs)
    # whichever ingest took the lock first, the rows are the reference's and their frames hash to the
    # same pixel_sha256 (verify reads them); only the cut of the arrays may differ
    for table in ("instances", "rejects"):
        assert table_rows(root, table, layout=False) == table_rows(reference.root, table, layout=False)
    report = verify(root, record=False)
    assert report.ok, [str(p) for p in report.problems]
    assert report.counts["instances_with_pixels"] == 12


def test_an_ingest_of_files_partly_in_the_lake_leaves_no_array_unused(tmp_path: Path, reference: Reference) -> None:
    """A unit holding files already in the lake goes to a worker whole, so the worker writes arrays of
    them again, cut otherwise than the run that stored them: no committed row uses those arrays, and
    they are discarded (the order the concurrent ingests above may take, made certain)."""
    root, key = twin_lake(tmp_path, "overlapping", reference)
    first_patient = sorted(p for p in reference.corpus.iterdir() if p.is_dir())[0]
    assert ingest(root, [first_patient], key_file=key, batch_size=BATCH).ingested == 4
    summary = ingest(root, [reference.corpus], key_file=key, batch_size=BATCH)
    assert (summary.ingested, summary.duplicates) == (8, 4)
    for table in ("instances", "rejects"):
        assert table_rows(root, table, layout=False) == table_rows(reference.root, table, layout=False)
    report = verify(root, record=False)
    assert report.ok, [str(p) for p in report.problems]


def test_kill_minus_nine_during_optimize_then_rerun(tmp_path: Path, reference: Reference) -> None:
    """Optimize writes its files, then commits: killed at each point, the lake reads as before, and
    the next optimize finishes the job (header lookups included)."""
    root, key = twin_lake(tmp_path, "optimized", reference)
    ingest(root, [reference.corpus], key_file=key, batch_size=BATCH)
    headers = dict(lake.open(root).sql("SELECT SOPInstanceUID, header_json FROM instances").rows())
    # optimize merges the small pixel arrays of a series: where the frames sit may change, not what they are
    rows = {t: table_rows(root, t, layout=False) for t in reference.rows}
    pixels = {uid: lake.open(root).pixels(uid) for uid in headers}

    def assert_reads_as_before() -> None:
        assert {t: table_rows(root, t, layout=False) for t in reference.rows} == rows
        lk = lake.open(root)
        for uid, text in headers.items():
            assert lk.header(uid) == json.loads(text)
            assert np.array_equal(lk.pixels(uid), pixels[uid])

    for point in OPTIMIZE_POINTS:
        args = ("optimize", "--lake", str(root), "--force", "--no-progress")
        with running(*args, env={crashpoints.CRASH_ENV: point}) as proc:
            assert proc.wait(timeout=120) == -signal.SIGKILL, f"optimize ended without reaching {point}"
        assert_reads_as_before()  # readers never see a half-written table
    with running("optimize", "--lake", str(root), "--no-progress") as final:
        assert final.wait(timeout=120) == 0
    assert_reads_as_before()
    assert lake.open(root).sql("SELECT count(*) FROM header_index")[0, 0] == len(headers)
    report = verify(root, record=False)
    assert report.ok, [str(p) for p in report.problems]
