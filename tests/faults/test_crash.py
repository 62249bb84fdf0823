"""kill -9 of ``lake ingest`` at random moments, then the same command: the lake equals an
uninterrupted run's. Two ingests at once: the second waits on the lock, then both complete."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lake.ingest import ingest
from lake.maintenance.verify import verify
from tests.faults.conftest import cli, new_lake, table_rows

CHAINS = 2
KILLS_PER_CHAIN = 4


def _ingest_args(src: Path, root: Path, key: Path) -> list[str]:
    lake_args = ["--lake", str(root), "--key-file", str(key)]
    return ["ingest", str(src), *lake_args, "--workers", "1", "--batch-size", "2", "--no-progress"]


def _wait_for_lock(root: Path, pid: int, limit: float = 30.0) -> bool:
    """True once process ``pid`` holds the lake's write lock (it writes its pid into the lock file)."""
    deadline = time.monotonic() + limit
    lock = root / ".lock"
    while time.monotonic() < deadline:
        try:
            if lock.read_text().strip() == str(pid):
                return True
        except OSError:
            pass
        time.sleep(0.01)
    return False


def _kill_at_random(src: Path, root: Path, key: Path, rng: random.Random) -> bool:
    """Start an ingest, kill -9 it (and its worker) a random time after it took the lock.

    Returns whether it was still running when killed.
    """
    proc = cli(*_ingest_args(src, root, key), stderr=subprocess.DEVNULL)
    assert _wait_for_lock(root, proc.pid) or proc.poll() is not None
    time.sleep(rng.uniform(0.0, 1.4))
    alive = proc.poll() is None
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive


def test_kill_minus_nine_then_rerun_equals_uninterrupted(tmp_path: Path, corpus: Path) -> None:
    ref_root, ref_key = new_lake(tmp_path, "reference")
    reference = ingest(ref_root, [corpus], key_file=ref_key, batch_size=2)
    assert reference.ingested == 12 and reference.rejected == 2
    expected = {t: table_rows(ref_root, t) for t in ("instances", "rejects")}

    def chain(number: int) -> int:
        """Kill an ingest into a fresh lake several times, then let it finish; returns the kills."""
        rng = random.Random(6 + number)
        root, key = new_lake(tmp_path, f"crashed{number}")
        # the lake must have the reference's key so that pseudonyms and UIDs match
        key.write_bytes(ref_key.read_bytes())
        config = (root / "lake.json").read_text()
        ref_config = (ref_root / "lake.json").read_text()
        (root / "lake.json").write_text(ref_config.replace(_lake_id(ref_config), _lake_id(config)))
        kills = sum(_kill_at_random(corpus, root, key, rng) for _ in range(KILLS_PER_CHAIN))
        final = cli(*_ingest_args(corpus, root, key))
        assert final.wait(timeout=120) == 0
        for table, rows in expected.items():
            assert table_rows(root, table) == rows, f"chain {number}: {table} differs from the uninterrupted run"
        report = verify(root, record=False)
        assert report.ok, [str(p) for p in report.problems]
        assert report.counts["instances_with_pixels"] == 12
        return kills

    # the chains run side by side: most of a CLI run is its start-up, which the two cores share
    with ThreadPoolExecutor(CHAINS) as pool:
        kills = sum(pool.map(chain, range(CHAINS)))
    assert kills >= CHAINS * KILLS_PER_CHAIN // 2  # most kills landed while the ingest was working


def _lake_id(config_text: str) -> str:
    import json

    return str(json.loads(config_text)["lake_id"])


def test_concurrent_ingests_wait_on_the_lock_and_never_corrupt(tmp_path: Path, corpus: Path) -> None:
    from lake.lock import write_lock

    ref_root, ref_key = new_lake(tmp_path, "reference")
    ingest(ref_root, [corpus], key_file=ref_key, batch_size=2)
    root, key = new_lake(tmp_path, "shared")
    key.write_bytes(ref_key.read_bytes())
    (root / "lake.json").write_text(
        (ref_root / "lake.json").read_text().replace(_lake_id((ref_root / "lake.json").read_text()), "shared-lake")
    )
    halves = [corpus / p.name for p in sorted(corpus.iterdir()) if p.is_dir()]
    errs = [tmp_path / "err0.txt", tmp_path / "err1.txt"]
    handles = [e.open("wb") for e in errs]
    with write_lock(root / ".lock"):  # hold the lock so that both must wait
        # one ingests everything, the other one of the three patients: they overlap
        args = [_ingest_args(corpus, root, key), [a for a in _ingest_args(corpus, root, key) if a != str(corpus)]]
        args[1][1:1] = [str(halves[0])]
        procs = [cli(*a, stderr=h) for a, h in zip(args, handles, strict=True)]
        deadline = time.monotonic() + 30
        while not all("waiting" in e.read_text() for e in errs):
            assert time.monotonic() < deadline, "an ingest did not report that it waits for the lock"
            time.sleep(0.05)
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    for h in handles:
        h.close()
    assert all(f"process {os.getpid()} is writing to this lake" in e.read_text() for e in errs)
    for table in ("instances", "rejects"):
        assert table_rows(root, table) == table_rows(ref_root, table)
    assert verify(root, record=False).ok


def test_kill_minus_nine_during_optimize_then_rerun(tmp_path: Path, corpus: Path) -> None:
    """Optimize writes its files, then commits: killed anywhere, the lake reads as before, and the
    next optimize finishes the job (header lookups included)."""
    import json

    import lake

    root, key = new_lake(tmp_path)
    ingest(root, [corpus], key_file=key, batch_size=2)
    before = {t: table_rows(root, t) for t in ("instances", "rejects")}
    headers = dict(lake.open(root).sql("SELECT SOPInstanceUID, header_json FROM instances").rows())
    rng = random.Random(11)
    kills = 0
    for _ in range(4):
        proc = cli("optimize", "--lake", str(root), "--force", stderr=subprocess.DEVNULL)
        assert _wait_for_lock(root, proc.pid) or proc.poll() is not None
        time.sleep(rng.uniform(0.0, 0.8))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert {t: table_rows(root, t) for t in before} == before  # readers never see a half-written table
        lk = lake.open(root)
        for uid, text in headers.items():
            assert lk.header(uid) == json.loads(text)
    assert kills >= 2
    final = cli("optimize", "--lake", str(root))
    assert final.wait(timeout=120) == 0
    assert {t: table_rows(root, t) for t in before} == before
    lk = lake.open(root)
    assert lk.sql("SELECT count(*) FROM header_index")[0, 0] == len(headers)
    for uid, text in headers.items():
        assert lk.header(uid) == json.loads(text)
    report = verify(root, record=False)
    assert report.ok, [str(p) for p in report.problems]
