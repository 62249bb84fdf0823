"""Check that two versions of the code build the same lake: every table's rows and every pixel array.

    .venv/bin/python benchmarks/compare_lakes.py OLD_CHECKOUT [NEW_CHECKOUT] [--patients 8] [--no-shared]

Builds, with each checkout (``PYTHONPATH`` set to it, one worker, the same key file): the demo
lake (``lake demo --patients N``, same seed) and a lake of the shared scanner series
(``/work/shared/data/dicom``, skipped when absent); then compares every table row by row (columns
that describe the run itself, ids and times, left out) and every stored pixel array. Exits 1 on
a difference. For a performance change that must keep the output byte-identical (issue 16's
per-instance cost): export the old commit with ``git archive COMMIT | tar -x -C OLD``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _corpus import SHARED

#: Columns written about the run (ids, clocks, durations, the code's version), not from the input.
RUN_COLUMNS = frozenset({"ingest_run", "ingested_at", "rejected_at", "run_id", "started_at", "finished_at"})
#: Keys of the runs' JSON counts and of the de-identification reports that name the run or time it.
RUN_KEYS = frozenset({"run_id", "seconds"})


def _without_run(value: Any) -> Any:
    """A JSON value (or text holding one) without the keys that name or time the run."""
    if isinstance(value, str) and value[:1] in "{[":
        return json.dumps(_without_run(json.loads(value)), sort_keys=True)
    if isinstance(value, dict):
        return {k: _without_run(v) for k, v in value.items() if k not in RUN_KEYS}
    if isinstance(value, list):
        return [_without_run(v) for v in value]
    return value


def build(code: Path, kind: str, root: Path, key: Path, patients: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(code), "LAKE_HOME": str(root.parent / "home")}
    common = ["--lake", str(root), "--key-file", str(key), "--workers", "1", "--no-progress", "-q"]
    if kind == "demo":
        cmd = [sys.executable, "-m", "lake", "demo", "--patients", str(patients), *common]
    else:
        cmd = [sys.executable, "-m", "lake", "ingest", str(SHARED), *common]
    subprocess.run(cmd, env=env, check=True, cwd=code, stdout=subprocess.DEVNULL)


def _key(row: dict[str, Any]) -> str:
    return repr(sorted(row.items()))


def compare(old: Path, new: Path, key: Path) -> list[str]:
    import lake

    a, b = lake.open(old, key_file=key), lake.open(new, key_file=key)
    problems = []
    for table in sorted(set(a.tables()) | set(b.tables())):
        rows = []
        for lk in (a, b):
            frame = lk.table(table).collect() if table in lk.tables() else None
            found = [] if frame is None else frame.to_dicts()
            rows.append(sorted(_key({k: _without_run(v) for k, v in r.items() if k not in RUN_COLUMNS}) for r in found))
        if rows[0] != rows[1]:
            only = len(set(rows[0]) ^ set(rows[1]))
            problems.append(f"table {table}: {len(rows[0])} rows vs {len(rows[1])}, {only} rows differ")
        else:
            print(f"  table {table}: {len(rows[0])} rows equal")
    reports = [[_without_run(json.loads(p.read_text())) for p in sorted((lk.root / "reports").glob("deid-*.json"))]
               for lk in (a, b)]  # fmt: skip
    if reports[0] != reports[1]:
        problems.append("the de-identification reports (actions counted per attribute) differ")
    else:
        print(f"  de-identification reports: {len(reports[0])} equal")
    sops = a.sql("SELECT SOPInstanceUID FROM instances WHERE pixel_status = 'stored'")["SOPInstanceUID"]
    unequal = [s for s in sops if not np.array_equal(a.pixels(s), b.pixels(s))]
    print(f"  pixels: {len(sops) - len(unequal)} of {len(sops)} arrays equal")
    if unequal:
        problems.append(f"pixels: {len(unequal)} arrays differ")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path, help="checkout of the code before the change")
    parser.add_argument("new", type=Path, nargs="?", default=Path(__file__).resolve().parents[1])
    parser.add_argument("--patients", type=int, default=8, help="patients of the demo lake")
    parser.add_argument("--no-shared", action="store_true", help="the demo lake only")
    args = parser.parse_args()
    kinds = ["demo"] + ([] if args.no_shared or not SHARED.is_dir() else ["shared"])
    failed = []
    with tempfile.TemporaryDirectory(prefix="lake-compare-") as tmp:
        for kind in kinds:
            key = Path(tmp) / kind / "keys" / "lake.key"
            roots = [Path(tmp) / kind / name for name in ("old", "new")]
            for code, root in zip((args.old, args.new), roots, strict=True):
                build(code.resolve(), kind, root, key, args.patients)
            print(f"{kind} lake, old {args.old} vs new {args.new}:")
            failed += [f"{kind}: {p}" for p in compare(*roots, key)]
    for problem in failed:
        print("DIFFERENT", problem)
    print("same lakes" if not failed else f"{len(failed)} differences")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
