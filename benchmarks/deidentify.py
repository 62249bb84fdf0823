"""De-identification throughput: this project's engine against ``deid.dicom.replace_identifiers``.

Both run on the same parsed datasets (pydicom's and pydicom-data's files, plus ../shared/data/dicom
when present), in this process, one after the other; reading files is not timed. ``deid`` runs
with its default recipe (``deid.dicom``). Prints files/s for each and the ratio; asserts nothing.
Times are this process's CPU time (``time.process_time``), the best of ``--repeat`` runs: on a
shared machine, wall-clock time also counts the other processes' load, which changes between the
two measurements and moved the ratio by 30% from run to run.

    python benchmarks/deidentify.py [--limit N] [--repeat R]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import pydicom
from pydicom import Dataset

# This file is named like the package it measures: take its folder off the path so that
# ``import deid`` finds the package, and load the corpus helper by path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
_spec = importlib.util.spec_from_file_location("_corpus", HERE / "_corpus.py")
assert _spec is not None and _spec.loader is not None
_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_corpus)

from lake.deid.burned_in import quiet_deid  # noqa: E402
from lake.deid.engine import Deidentifier  # noqa: E402
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, Profile  # noqa: E402
from lake.keys import generate_key  # noqa: E402


def _load(limit: int) -> list[Dataset]:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in _corpus.corpus_files():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                for _ in ds.iterall():  # parse every element now: neither side pays for lazy reads
                    pass
            except Exception:
                continue
            if "SOPInstanceUID" in ds:
                out.append(ds)
            if len(out) >= limit:
                break
    return out


def _ours(datasets: list[Dataset]) -> float:
    deid = Deidentifier(generate_key(), Profile(DEFAULT_RESEARCH_OPTIONS))
    copies = [copy.deepcopy(ds) for ds in datasets]
    t0 = time.process_time()
    for ds in copies:
        deid.deidentify(ds)
    return time.process_time() - t0


def _theirs(datasets: list[Dataset]) -> tuple[float, int]:
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers

    recipe = DeidRecipe("dicom")
    copies = [copy.deepcopy(ds) for ds in datasets]
    failed = 0
    t0 = time.process_time()
    for ds in copies:
        fds = pydicom.FileDataset("", ds, file_meta=getattr(ds, "file_meta", None), preamble=b"\0" * 128)
        try:
            replace_identifiers([fds], deid=recipe, save=False)
        except Exception:
            failed += 1
    return time.process_time() - t0, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=400, help="at most this many files")
    parser.add_argument("--repeat", type=int, default=3, help="best of R runs")
    args = parser.parse_args()
    datasets = _load(args.limit)
    with warnings.catch_warnings(), quiet_deid():
        warnings.simplefilter("ignore")
        ours = min(_ours(datasets) for _ in range(args.repeat))
        runs = [_theirs(datasets) for _ in range(args.repeat)]
    theirs, failed = min(runs)
    n = len(datasets)
    print(f"files: {n}")
    print(f"lake engine (research profile)   : {n / ours:8.1f} files/s")
    print(f"deid replace_identifiers (default): {n / theirs:8.1f} files/s ({failed} files raised)")
    print(f"ratio lake/deid: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
