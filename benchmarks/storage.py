"""A lake in object storage against the same lake in a folder: query, pixel and write times, as ratios.

    .venv/bin/python benchmarks/storage.py [--patients 40] [--repeat 5] [--dir /tmp/lake-bench-storage]

Builds the demo lake (``lake demo``'s synthetic archive of ``--patients`` patients) in a folder,
copies it to moto's S3 server on 127.0.0.1 (``lake replicate --to s3://...``, :mod:`lake.testing.s3`)
and times the same work on both, in the same run:

- ``open + count``: ``lake.open`` and a first query (the Delta logs read, the views made: "cold");
- warm queries on one open lake: ``count(*)``, ``studies``, ``timeline``, ``priors``, a header by UID;
- pixels: a whole series through ``series_array``, one frame through ``lk.pixels`` and through a
  snapshot's ``pixels`` (pinned versions: no listing of the tables per call);
- ``verify``: every checksum re-hashed;
- ``ingest`` of 3 patients' archive into a new lake (S3: staged in a folder and published);
- ``ingest`` of the same archive into the demo lake itself (a fresh copy each run), staged two ways:
  tables and array metadata only, shards fetched when read (:mod:`lake.storage.lazy`, the default),
  and the whole lake, every shard (``staged_lake(whole=True)``, what staging did before 2026-12-02);
  the bytes each copied from the store are printed with the times.
- ``lake ingest --workers 1`` and ``--workers 2`` of a 12-patient archive into a new lake, in a
  folder and on S3: files/s and the largest worker's peak resident memory (sampled);

Prints the median of ``--repeat`` runs and the ratio S3 / folder. Moto is a Python server on the same
machine: its latency is lower and its per-request cost higher than a real S3's, so the ratios say
where the requests go, not what a cloud bucket would measure. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

QUERIES = {
    "count(*)": "SELECT count(*) FROM instances",
    "studies": "SELECT * FROM studies",
    "timeline": "SELECT * FROM timeline",
    "priors": "SELECT * FROM priors",
}


def _median(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _measure(where: str, repeat: int, ingest_src: Path, scratch: Path) -> dict[str, float]:
    import lake
    from lake.cli import main
    from lake.maintenance.verify import verify

    out: dict[str, float] = {}
    out["open + count"] = _median(lambda: lake.open(where).sql(QUERIES["count(*)"]), repeat)
    lk = lake.open(where)
    for name, query in QUERIES.items():
        out[name] = _median(lambda q=query: lk.sql(q), repeat)  # type: ignore[misc]
    sop = lk.sql("SELECT SOPInstanceUID FROM instances WHERE pixel_array IS NOT NULL ORDER BY 1 LIMIT 1").item()
    out["header by UID"] = _median(lambda: lk.header(sop), repeat)
    series = lk.sql(
        "SELECT SeriesInstanceUID FROM instances WHERE pixel_array IS NOT NULL "
        "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    ).item()
    out["series_array (whole series)"] = _median(lambda: lake.open(where).series_array(series).compute(), repeat)
    out["one frame (lk.pixels)"] = _median(lambda: lk.pixels(sop, frame=0), repeat)
    with lk.snapshot() as snap:
        snap.pixels(sop, frame=0)  # its frame locations cached, as lk.pixels' are by now
        out["one frame (snapshot.pixels)"] = _median(lambda: snap.pixels(sop, frame=0), repeat)
    out["verify"] = _median(lambda: verify(where, record=False), max(1, repeat // 2))

    runs = iter(range(1000))

    def ingest_once() -> None:
        n = next(runs)
        target = (
            f"{where}-ingest{n}"
            if "://" in where
            else str(Path(tempfile.mkdtemp(prefix="ingest-", dir=scratch)) / "lake")
        )
        key = scratch / f"key{n}-{abs(hash(where))}.key"
        args = ["ingest", str(ingest_src), "--lake", target, "--key-file", str(key), "--no-progress", "-q"]
        with contextlib.redirect_stdout(io.StringIO()):  # the ingest's summary
            code = main(args)
        if code != 0:
            raise RuntimeError("the benchmark's ingest failed")

    out["ingest 3 patients"] = _median(ingest_once, max(1, repeat // 2))
    return out


def _ingest_into_copies(
    folder: Path, url: str, key: Path, src: Path, scratch: Path, repeat: int
) -> tuple[dict[str, float], dict[str, int]]:
    """Median seconds of an ingest of ``src`` into a fresh copy of the demo lake (folder, S3 staged
    lazily, S3 staged whole) and the bytes the last S3 runs staged."""
    from lake.ingest import ingest
    from lake.maintenance.replicate import replicate
    from lake.storage.lazy import StagingCounts
    from lake.storage.staging import staged_lake

    times: dict[str, list[float]] = {"folder": [], "lazy": [], "whole": []}
    staged: dict[str, int] = {}
    for n in range(repeat):
        run_dir = Path(tempfile.mkdtemp(prefix="into-", dir=scratch))  # --dir is kept: new names each time
        copy = run_dir / "lake"
        shutil.copytree(folder, copy)
        copy_key = run_dir / "keys" / "demo.key"  # a vault of its own
        copy_key.parent.mkdir(parents=True)
        shutil.copy2(key, copy_key)
        t0 = time.perf_counter()
        ingest(copy, [src], key_file=copy_key)
        times["folder"].append(time.perf_counter() - t0)
        for how in ("lazy", "whole"):
            target = f"{url}-into{n}-{how}"
            replicate(folder, target)
            how_key = run_dir / f"{how}-keys" / "demo.key"
            how_key.parent.mkdir(parents=True)
            shutil.copy2(key, how_key)
            counts = StagingCounts()
            t0 = time.perf_counter()
            with staged_lake(target, counts=counts, whole=how == "whole") as staged_folder:
                ingest(staged_folder, [src], key_file=how_key)
            times[how].append(time.perf_counter() - t0)
            staged[f"{how} staged bytes"] = counts.staged_bytes + counts.fetched_bytes
            staged[f"{how} staged files"] = counts.staged_files + counts.fetched_shards
        shutil.rmtree(run_dir)
    return {k: statistics.median(v) for k, v in times.items()}, staged


class _ChildPeaks:
    """Peak resident memory of each child process (the ingest's workers), sampled in a thread.

    A benchmark's sampling: a worker's peak between two samples (every 50 ms) can be missed."""

    def __init__(self) -> None:
        import threading

        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.05):
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), child.memory_info().rss)

    def __enter__(self) -> _ChildPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _throughput(url: str, src: Path, scratch: Path) -> list[tuple[str, int, float, float | None]]:
    """Files/s of ``lake ingest --workers 1`` and ``2`` of ``src`` into a new folder lake and a new
    lake on S3 (staged, then published), and the largest worker's peak RSS (MB) with 2 workers (one
    worker runs in the ingest's own process)."""
    from lake.cli import main

    files = sum(1 for p in src.rglob("*") if p.is_file())
    out = []
    for workers in (1, 2):
        for where in ("folder", "S3"):
            n = len(out)
            target = f"{url}-workers{n}" if where == "S3" else str(scratch / f"workers{n}" / "lake")
            key = scratch / f"workers-key{n}.key"
            args = ["ingest", str(src), "--lake", target, "--key-file", str(key), "--no-progress", "-q"]
            args += ["--workers", str(workers)]
            with _ChildPeaks() as peaks, contextlib.redirect_stdout(io.StringIO()):
                t0 = time.perf_counter()
                code = main(args)
                took = time.perf_counter() - t0
            if code != 0:
                raise RuntimeError("the benchmark's ingest failed")
            worker_mb = max(peaks.peaks.values()) / 1e6 if workers > 1 and peaks.peaks else None
            out.append((where, workers, files / took, worker_mb))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one, removed)")
    args = parser.parse_args()

    import s3fs

    from lake.demo.archive import ArchiveSpec, write_archive
    from lake.demo.build import build_demo
    from lake.maintenance.replicate import replicate
    from lake.testing.s3 import run_s3_server

    work = args.dir or Path(tempfile.mkdtemp(prefix="lake-bench-storage-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["LAKE_HOME"] = str(work / "home")
    try:
        folder = work / "lake"
        if not (folder / "lake.json").exists():
            print(f"building the demo lake of {args.patients} patients ...", file=sys.stderr)
            build_demo(folder, ArchiveSpec(patients=args.patients), key_file=work / "demo.key")
        small = work / "archive-3"
        if not small.exists():
            write_archive(small, ArchiveSpec(patients=3, seed=7))
        with run_s3_server() as s3, s3.environment():
            s3.make_bucket("lake-bench")
            s3fs.S3FileSystem.clear_instance_cache()
            url = "s3://lake-bench/demo"
            t0 = time.perf_counter()
            replicate(folder, url)
            copy = time.perf_counter() - t0
            local = _measure(str(folder), args.repeat, small, work)
            remote = _measure(url, args.repeat, small, work)
            into, staged = _ingest_into_copies(folder, url, work / "demo.key", small, work, max(1, args.repeat // 2))
            larger = work / "archive-12"
            if not larger.exists():
                write_archive(larger, ArchiveSpec(patients=12, seed=11))
            rates = _throughput(url, larger, work)
        import lake

        info = lake.open(folder).info()
        print(
            f"demo lake: {info['instances']} instances, {info['series']} series, "
            f"{info['bytes_on_disk'] / 1e6:.1f} MB; copied to S3 in {copy:.1f} s; median of {args.repeat} runs"
        )
        print(f"{'work':<30} {'folder':>10} {'S3 (moto)':>10} {'S3/folder':>10}")
        for name, seconds in local.items():
            print(f"{name:<30} {seconds * 1000:>8.1f}ms {remote[name] * 1000:>8.1f}ms {remote[name] / seconds:>9.1f}x")
        print("ingest of 3 patients into the demo lake (S3: staged, then published)")
        for how, label in (("lazy", "metadata, shards when read"), ("whole", "the whole lake (before)")):
            print(
                f"  S3, staging {label:<28} {into[how] * 1000:>8.1f}ms ({into[how] / into['folder']:.1f}x the folder's "
                f"{into['folder'] * 1000:.1f}ms), staged {staged[f'{how} staged files']} files, "
                f"{staged[f'{how} staged bytes'] / 1e6:.1f} MB"
            )
        files = sum(1 for p in (work / "archive-12").rglob("*") if p.is_file())
        print(f"ingest throughput, {files} files of a 12-patient archive into a new lake (S3: staged, then published)")
        by = {(where, workers): (rate, mb) for where, workers, rate, mb in rates}
        for workers in (1, 2):
            folder_rate, s3_rate = by[("folder", workers)][0], by[("S3", workers)][0]
            peak = [by[(w, workers)][1] for w in ("folder", "S3")]
            memory = "in the ingest's process" if workers == 1 else " / ".join(f"{m or 0:.0f} MB" for m in peak)
            print(
                f"  {workers} worker(s): folder {folder_rate:6.1f} files/s, S3 {s3_rate:6.1f} files/s "
                f"({s3_rate / folder_rate:.2f}x); largest worker's peak RSS (folder / S3): {memory}"
            )
        print(
            f"  2 / 1 workers: folder {by[('folder', 2)][0] / by[('folder', 1)][0]:.2f}x, "
            f"S3 {by[('S3', 2)][0] / by[('S3', 1)][0]:.2f}x"
        )
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
