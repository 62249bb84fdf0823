"""Start-up cost of the command line and of ``import lake``, against peers measured in the same run.

    .venv/bin/python benchmarks/startup.py [--runs 15] [--lake demo-lake]

Each command runs ``--runs`` times in a fresh process; the median wall time and the median CPU
time (user + system of the child: less disturbed by other load on the machine) are printed, and
their ratio to ``python -c pass``. Peers: ``python -c pass``, ``import duckdb``, ``import pydicom``
(the libraries a query and an ingest cannot do without). ``lake sql`` runs on ``--lake`` (a demo
lake, built in a temporary folder when absent). Goals (issue 11): ``lake --help`` under 0.3 s,
``lake sql`` on the demo lake under 0.6 s. Nothing is asserted; ``tests/test_startup.py`` checks
the import structure that gives these times.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _lake_command() -> list[str]:
    """``lake`` as installed beside this Python, else ``python -m lake`` (a checkout on PYTHONPATH)."""
    script = Path(sys.executable).with_name("lake")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lake"]


#: The children cache bytecode as an ordinary Python does (the warm-up run writes ``__pycache__``):
#: with PYTHONDONTWRITEBYTECODE set every run would compile lake's modules again (~30 ms).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _time(cmd: list[str], runs: int, cwd: Path) -> tuple[float, float]:
    """Median wall and CPU seconds of ``cmd`` over ``runs`` fresh processes (one warm-up first)."""
    wall, cpu = [], []
    for i in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=CHILD_ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i:  # the first run fills the OS file cache and __pycache__
            wall.append(elapsed)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh processes per command (default 15)")
    parser.add_argument("--lake", type=Path, help="a demo lake for `lake sql` (default: build one in a temp folder)")
    args = parser.parse_args()

    lake_cmd = _lake_command()
    with tempfile.TemporaryDirectory(prefix="lake-startup-") as tmp:
        work = Path(tmp)
        demo = args.lake
        if demo is None or not (demo / "lake.json").is_file():
            demo = work / "demo"
            print(f"building a demo lake in {demo} ...", flush=True)
            env = {**CHILD_ENV, "LAKE_HOME": str(work / "home")}  # its key stays in the temp folder
            subprocess.run(
                [*lake_cmd, "demo", "--lake", str(demo), "--no-progress"],
                check=True,
                stdout=subprocess.DEVNULL,
                env=env,
            )
        py = sys.executable
        cases = {
            "python -c pass": [py, "-c", "pass"],
            "python -c 'import duckdb'": [py, "-c", "import duckdb"],
            "python -c 'import pydicom'": [py, "-c", "import pydicom"],
            "python -c 'import lake'": [py, "-c", "import lake"],
            "lake --help": [*lake_cmd, "--help"],
            "lake sql 'SELECT 1'": [*lake_cmd, "sql", "--lake", str(demo.resolve()), "SELECT 1"],
            "lake sql (count studies)": [
                *lake_cmd,
                "sql",
                "--lake",
                str(demo.resolve()),
                "SELECT count(*) FROM studies",
            ],
        }
        results = {name: _time(cmd, args.runs, work) for name, cmd in cases.items()}

    base_wall, base_cpu = results["python -c pass"]
    print(f"\nmedian of {args.runs} fresh processes ({os.cpu_count()} cores, python {sys.version.split()[0]})")
    print(f"{'command':<30} {'wall s':>8} {'x pass':>7} {'cpu s':>8} {'x pass':>7}")
    for name, (wall, cpu) in results.items():
        print(f"{name:<30} {wall:8.3f} {wall / base_wall:7.1f} {cpu:8.3f} {cpu / max(base_cpu, 1e-6):7.1f}")
    help_wall, sql_wall = results["lake --help"][0], results["lake sql 'SELECT 1'"][0]
    print(f"\ngoals: lake --help {help_wall:.3f} s (< 0.3), lake sql {sql_wall:.3f} s (< 0.6)")


if __name__ == "__main__":
    main()
