"""Peak memory and wall time of the heavy commands, within the default budget against unbounded.

    .venv/bin/python benchmarks/memory.py [--rows 1000000] [--dir /tmp/mem-bench] [--keep] [--only optimize]

Builds a lake of ``--rows`` synthetic instances the way ``benchmarks/headers.py`` does (ingest-
sized appends of ``lake.testing.rows``), then runs each command as its own ``lake`` process under
``/usr/bin/time -v`` (peak resident memory, the figure the 23.2 GB optimize at 10 M was measured
with), twice in turn: with ``LAKE_MEMORY_LIMIT=none`` (no budget: DuckDB's defaults, every core and
80% of RAM, as before the budget existed) and with the default budget (min(25% of RAM, 4 GB)). The
ingest de-duplication state (``LakeState.load``) is measured the same way in a child process.
Prints peak RSS, wall and CPU time (user + system) of each and the ratios bounded / unbounded, with
the load average (the machine may be shared); nothing is asserted.

``--bounded-only`` skips the unbounded runs (at 10 M rows they need about 23 GB: do not run them on
a shared machine).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = {"unbounded": "none", "default": ""}


def measure(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> dict[str, float]:
    """Peak RSS (MB) and wall time (s) of one process, by GNU time (``ok``: accepted exit codes)."""
    t0 = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if done.returncode not in ok or found is None:
        tail = "\n".join(done.stderr.strip().splitlines()[-25:])
        raise RuntimeError(f"{' '.join(argv[:4])} exited {done.returncode}:\n{tail}")
    # CPU time too: on a shared machine wall time measures the neighbours as much as the command
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([0-9.]+)", done.stderr))
    return {"rss_mb": int(found.group(1)) / 1000, "wall_s": wall, "cpu_s": cpu}


def lake_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lake", *args]


STATE = (
    "import sys; from lake.config import LakePaths; from lake.ingest.state import LakeState; "
    "LakeState.load(LakePaths(sys.argv[1]))"
)


def commands(root: Path, work: Path, patients: list[str]) -> list[tuple[str, list[str]]]:
    """(name, argv) of each measured step; ``forget`` takes a patient per run."""
    sql = (
        "SELECT PatientID, StudyInstanceUID, count(*) AS n, min(SOPInstanceUID) AS first "
        "FROM instances GROUP BY ALL ORDER BY first"
    )
    return [
        ("optimize", lake_cmd("optimize", "--lake", str(root), "--force", "--no-progress", "-q")),
        ("verify", lake_cmd("verify", "--lake", str(root), "--no-progress")),
        ("sql", lake_cmd("sql", "--lake", str(root), sql, "--out", str(work / "out.parquet"), "--force")),
        ("replicate", lake_cmd("replicate", "--lake", str(root), "--to", str(work / "replica"), "--no-progress")),
        ("vacuum", lake_cmd("vacuum", "--lake", str(root))),
        ("forget", lake_cmd("forget", "--lake", str(root), "--patient", patients.pop())),
        ("ingest_state", [sys.executable, "-c", STATE, str(root)]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic instances (default 1000000)")
    parser.add_argument("--dir", type=Path, default=None, help="where the lake is built (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the lake afterwards")
    parser.add_argument("--bounded-only", action="store_true", help="skip the unbounded runs")
    parser.add_argument("--only", default="", help="comma-separated commands to measure (default: all), e.g. optimize")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from headers import build  # the same lake as benchmarks/headers.py

    base = args.dir or Path(tempfile.mkdtemp(prefix="lake-mem-"))
    base.mkdir(parents=True, exist_ok=True)
    root = base / f"lake-{args.rows}"
    if root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()
    built = build(root, args.rows, 100_000)
    print(f"built {built['rows']} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    env = {**os.environ, "LAKE_HOME": str(base / "lake-home")}
    import lake

    patients = [str(r[0]) for r in lake.open(root).sql("SELECT DISTINCT PatientID FROM instances LIMIT 4").rows()]
    modes = {"default": ""} if args.bounded_only else MODES
    results: dict[str, dict[str, dict[str, float]]] = {}
    wanted = {n for n in args.only.split(",") if n}
    for name, argv in commands(root, base, patients):
        if wanted and name not in wanted:
            continue
        for mode, limit in modes.items():
            if name == "forget" and mode != next(iter(modes)):
                argv = lake_cmd("forget", "--lake", str(root), "--patient", patients.pop())
            if name == "replicate":
                shutil.rmtree(base / "replica", ignore_errors=True)
            run_env = (
                {**env, "LAKE_MEMORY_LIMIT": limit}
                if limit
                else {k: v for k, v in env.items() if k != "LAKE_MEMORY_LIMIT"}
            )
            # the synthetic rows name pixel arrays that were never written: verify reports them (exit 1)
            results.setdefault(name, {})[mode] = measure(argv, run_env, (0, 1) if name == "verify" else (0,))
            got = results[name][mode]
            print(
                f"{name:<13} {mode:<10} peak {got['rss_mb']:8.0f} MB  {got['wall_s']:7.1f} s  "
                f"cpu {got['cpu_s']:7.1f} s  load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    print(
        f"\n{'command':<13} {'unbounded MB':>12} {'default MB':>11} {'RSS ratio':>9} "
        f"{'unb. s':>7} {'def. s':>7} {'time ratio':>10} {'unb. cpu':>8} {'def. cpu':>8} {'cpu ratio':>9}"
    )
    for name, by in results.items():
        d = by["default"]
        u = by.get("unbounded")
        if u is None:
            print(
                f"{name:<13} {'-':>12} {d['rss_mb']:11.0f} {'-':>9} {'-':>7} {d['wall_s']:7.1f} {'-':>10} "
                f"{'-':>8} {d['cpu_s']:8.1f} {'-':>9}"
            )
            continue
        print(
            f"{name:<13} {u['rss_mb']:12.0f} {d['rss_mb']:11.0f} {d['rss_mb'] / u['rss_mb']:9.2f} "
            f"{u['wall_s']:7.1f} {d['wall_s']:7.1f} {d['wall_s'] / u['wall_s']:10.2f} "
            f"{u['cpu_s']:8.1f} {d['cpu_s']:8.1f} {d['cpu_s'] / max(u['cpu_s'], 1e-9):9.2f}"
        )
    if not args.keep:
        shutil.rmtree(base if args.dir is None else root, ignore_errors=True)


if __name__ == "__main__":
    main()
