"""Per-instance CPU cost of each step of one worker's ``process`` (parse, decode, burned-in rules,
de-identification, OCR, header flattening, pixel digest), on the pull benchmark's corpus.

    .venv/bin/python benchmarks/instance_cost.py [--corpus pull|shared-ct] [--repeat 3] [--patients 4]

Runs the steps of :func:`lake.ingest.worker.process` one by one on each file (read into memory
first) and prints the CPU milliseconds per instance of each, the smallest of ``--repeat`` passes
(the machine is shared: CPU time, not wall time, and the least disturbed pass). What comes after a
worker (pixel encoding, round-trip verification, checksums, table commits) is not in it: see
benchmarks/README.md "Per-instance cost" for a whole-ingest profile. To compare two versions of the
code, run it with ``PYTHONPATH`` set to each checkout in turn.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _corpus import SHARED
from pull import corpus

import lake
from lake.config import BulkSettings
from lake.deid import build_deidentifier
from lake.deid.pixels import assess, decide
from lake.errors import RejectedInput
from lake.headers.flatten import header_and_bulk, promoted_row
from lake.headers.schema import load_table_schema
from lake.ingest.worker import parse, validate
from lake.pixels.decode import decode

STEPS = ("parse", "pixel decode", "burned-in rules", "de-identification", "OCR (pixel decision)",
         "promoted columns", "DICOM JSON + bulk", "pixel sha256")  # fmt: skip


def one_pass(blobs: list[bytes], deid: Any, policy: str) -> tuple[Counter[str], int]:
    schema, bulk = load_table_schema("instances"), BulkSettings()
    spent: Counter[str] = Counter()
    done = 0

    def timed(step: str, fn: Callable[[], Any]) -> Any:
        t0 = time.process_time()
        try:
            return fn()
        finally:
            spent[step] += time.process_time() - t0

    for data in blobs:
        try:
            ds = timed("parse", lambda data=data: parse(data))
            validate(ds)
        except RejectedInput:
            continue
        pixels = timed("pixel decode", lambda ds=ds: decode(ds))
        assessment = timed("burned-in rules", lambda ds=ds: assess(ds))
        timed("de-identification", lambda ds=ds: deid.deidentify(ds))
        decision = timed("OCR (pixel decision)", lambda ds=ds, p=pixels, a=assessment: decide(ds, p, policy, a, False))
        timed("promoted columns", lambda ds=ds: promoted_row(ds, schema))
        timed("DICOM JSON + bulk", lambda ds=ds: header_and_bulk(ds, bulk))
        if decision.frames is not None:
            timed("pixel sha256", lambda f=decision.frames: hashlib.sha256(f.tobytes()).hexdigest())
        done += 1
    return spent, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=("pull", "shared-ct"), default="pull")
    parser.add_argument("--repeat", type=int, default=3, help="passes; the smallest time of each step is kept")
    parser.add_argument("--patients", type=int, default=4, help="synthetic patients of the pull corpus")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lake-instance-cost-") as tmp:
        os.environ["LAKE_HOME"] = str(Path(tmp) / "home")
        if args.corpus == "pull":
            files = corpus(Path(tmp) / "src", args.patients, True)
        else:
            files = [p for p in sorted((SHARED / "dcm_qa_ct").rglob("*")) if p.is_file() and p.name != "LICENSE"]
        blobs = [p.read_bytes() for p in files]
        lk = lake.init(Path(tmp) / "lake", key_file=Path(tmp) / "keys" / "lake.key")
        deid = build_deidentifier(lk.key(), lk.config.deid, None)
        one_pass(blobs[:20], deid, lk.config.deid.burned_in_policy)  # imports, caches, JIT: not measured
        best: dict[str, float] = {}
        for _ in range(args.repeat):
            spent, done = one_pass(blobs, deid, lk.config.deid.burned_in_policy)
            for step in STEPS:
                best[step] = min(best.get(step, float("inf")), spent[step] / done * 1000)
    load = os.getloadavg()[0]
    print(f"{done} instances ({args.corpus}), CPU ms per instance, best of {args.repeat}; load average {load:.1f}")
    for step in STEPS:
        print(f"  {step:<24} {best[step]:7.2f}")
    print(f"  {'total':<24} {sum(best.values()):7.2f}  ({1000 / sum(best.values()):.0f} instances per CPU-second)")


if __name__ == "__main__":
    main()
