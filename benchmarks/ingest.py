"""Ingest throughput: ``lake ingest`` against the floor (bare pydicom read + decode) and the peer
(the ``deid`` package's ``replace_identifiers`` with its default recipe), on the same files in one run.

    .venv/bin/python benchmarks/ingest.py [--no-shared] [--repeat 1]

Prints files/s and MB/s of each and the ratios. ``lake`` does much more per file than either
(de-identification of every element at every depth, typed rows, DICOM JSON, lossless pixel
store with read-back verification, Delta commits), so the floor ratio says what that costs.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pydicom
from _corpus import corpus_files

from lake.ingest import ingest


def bare_pydicom(files: list[Path]) -> int:
    ok = 0
    for f in files:
        try:
            ds = pydicom.dcmread(f)
            if "PixelData" in ds:
                ds.pixel_array  # noqa: B018
            ok += 1
        except Exception:
            continue
    return ok


def deid_default_recipe(files: list[Path]) -> int:
    from deid.dicom import replace_identifiers
    from deid.logger import bot

    bot.level = 0
    logging.getLogger("deid").setLevel(logging.ERROR)
    ok = 0
    for f in files:
        try:
            replace_identifiers([str(f)], save=False)
            ok += 1
        except Exception:
            continue
    return ok


def lake_ingest(files: list[Path], workers: int) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="lake-bench-"))
    os.environ["LAKE_HOME"] = str(tmp / "home")
    src = tmp / "src"
    src.mkdir()
    for i, f in enumerate(files):  # one flat folder of links: same files, no duplicate names
        (src / f"{i:06d}").symlink_to(f)
    try:
        summary = ingest(tmp / "lake", [src], workers=workers)
        return summary.ingested + summary.duplicates
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(name: str, fn, files: list[Path], nbytes: int) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    ok = fn(files)
    dt = time.perf_counter() - t0
    rate = len(files) / dt
    print(
        f"{name:<34} {len(files):6d} files ({ok:6d} ok) {dt:8.2f} s {rate:8.1f} files/s {nbytes / dt / 1e6:8.1f} MB/s"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-shared", action="store_true", help="only the pip-shipped files")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    files = corpus_files(include_shared=not args.no_shared)
    nbytes = sum(f.stat().st_size for f in files)
    print(f"corpus: {len(files)} files, {nbytes / 1e6:.1f} MB, {os.cpu_count()} cores\n")
    floor = measure("pydicom read + decode (floor)", bare_pydicom, files, nbytes)
    peer = measure("deid replace_identifiers (peer)", deid_default_recipe, files, nbytes)
    one = measure("lake ingest --workers 1", lambda fs: lake_ingest(fs, 1), files, nbytes)
    two = measure("lake ingest --workers 2", lambda fs: lake_ingest(fs, 2), files, nbytes)
    print()
    print(f"lake (1 worker) / deid peer:     {one / peer:6.2f}x")
    print(f"lake (2 workers) / deid peer:    {two / peer:6.2f}x")
    print(f"lake (1 worker) / pydicom floor: {one / floor:6.2f}x")
    print(f"lake (2 workers) / pydicom floor:{two / floor:6.2f}x")


if __name__ == "__main__":
    main()
