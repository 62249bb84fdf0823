"""Longitudinal queries at scale: the ``priors`` view, a follow-up cohort, and the ``series`` view.

    .venv/bin/python benchmarks/cohorts.py --rows 1000000 [--rows 10000000] [--dir /tmp/lake-bench] [--keep]

Builds a lake of ``--rows`` synthetic instances (``lake.testing.rows``, appended in ingest-sized
chunks, as ``benchmarks/headers.py`` does) and runs ``lake optimize``. Each query then runs in a
fresh Python process ("cold": ``lake.open``, the DuckDB connection with its views and macros, the
query) and once more in it ("warm"), against the same query written by hand in plain DuckDB over
the snapshot's Parquet files (a fresh process too, its connection and file list included):

- ``priors``: ``SELECT * FROM priors`` against the view's logic spelled out over the files;
- ``follow_up``: patients with a baseline CT (their first) and a follow-up CT 180-540 days later,
  from ``priors`` against the same from the files;
- ``series``: ``SELECT * FROM series`` computed live from instances (as before ``series_summary``)
  and read through the view after optimize, beside ``SELECT * FROM studies``.

Prints times and ratios; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

FOLLOW_UP = """
    WITH ct AS (SELECT PatientID, StudyInstanceUID, StudyDate, time_point FROM {priors} WHERE Modality = 'CT')
    SELECT b.PatientID, b.StudyInstanceUID AS baseline, b.StudyDate AS baseline_date,
           f.StudyInstanceUID AS follow_up, date_diff('day', b.StudyDate, f.StudyDate) AS days
    FROM ct b JOIN ct f ON f.PatientID = b.PatientID AND f.time_point > b.time_point
    WHERE b.time_point = 1 AND date_diff('day', b.StudyDate, f.StudyDate) BETWEEN 180 AND 540"""

#: The follow-up cohort by hand: CT studies ranked per patient straight from the files.
HAND_FOLLOW_UP = """
    WITH s AS (
        SELECT PatientID, StudyInstanceUID, min(StudyDate) AS StudyDate, min(StudyTime) AS StudyTime
        FROM instances WHERE Modality = 'CT' GROUP BY PatientID, StudyInstanceUID
    ), ct AS (
        SELECT *, row_number() OVER (
            PARTITION BY PatientID ORDER BY StudyDate NULLS LAST, StudyTime NULLS LAST, StudyInstanceUID
        ) AS time_point FROM s
    )
    SELECT b.PatientID, b.StudyInstanceUID AS baseline, b.StudyDate AS baseline_date,
           f.StudyInstanceUID AS follow_up, date_diff('day', b.StudyDate, f.StudyDate) AS days
    FROM ct b JOIN ct f ON f.PatientID = b.PatientID AND f.time_point > b.time_point
    WHERE b.time_point = 1 AND date_diff('day', b.StudyDate, f.StudyDate) BETWEEN 180 AND 540"""

LAKE_QUERIES = {
    "priors": "SELECT * FROM priors",
    "follow_up": FOLLOW_UP.format(priors="priors"),
    "series_live": "SELECT * FROM series",  # run with use_materialised=False: the view as before
    "series": "SELECT * FROM series",
    "studies": "SELECT * FROM studies",
}


def _priors_by_hand() -> str:
    """The priors view's own SQL, over a plain ``instances`` view of the files."""
    from lake.catalog.query import view_definitions

    return next(v for v in view_definitions() if v.name == "priors").sql


def child(kind: str, root: str, name: str) -> dict[str, float]:
    t0 = opened = time.perf_counter()
    if kind == "lake":
        import lake
        from lake.catalog.query import fetch_arrow, open_views

        t0 = time.perf_counter()  # after the imports: the hand-written peer imports duckdb only
        if name == "series_live":
            con = open_views(lake.open(root).paths, use_materialised=False)[0]
        else:
            con = lake.open(root).connection()  # type: ignore[assignment]
        sql = LAKE_QUERIES[name]
        run = lambda: fetch_arrow(con, sql)  # noqa: E731
        fetch_arrow(con, "SELECT 1")  # the connection is open: what follows is the query alone
        opened = time.perf_counter()
    else:
        import duckdb

        from lake.catalog.query import relation_arrow
        from lake.catalog.tables import snapshot_files

        t0 = time.perf_counter()
        files = snapshot_files(Path(root) / "tables" / "instances")
        con = duckdb.connect()
        listed = ", ".join("'" + f + "'" for f in files)
        con.execute(f"CREATE VIEW instances AS SELECT * FROM read_parquet([{listed}])")
        sql = {"priors": PRIORS_SQL, "follow_up": HAND_FOLLOW_UP}[name]
        run = lambda: relation_arrow(con.sql(sql))  # noqa: E731
    opened = time.perf_counter()
    first = run()
    cold = time.perf_counter() - t0
    w = time.perf_counter()
    second = run()
    warm = time.perf_counter() - w
    return {
        "cold_s": cold,
        "query_cold_s": time.perf_counter() - opened - warm,
        "warm_s": warm,
        "rows": float(first.num_rows),
        "rows_again": float(second.num_rows),
    }


PRIORS_SQL = ""  # set in the hand-written child from the view file (same text, plain DuckDB)


def measure(kind: str, root: Path, name: str) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", kind, "--lake", str(root), "--query", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def run_size(base: Path, rows: int, chunk: int, say: Callable[[str, object], None], reuse: bool = False) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from headers import build  # the same corpus and append path as the header benchmark

    import lake

    root = base / f"lake-{rows}"
    if not (reuse and root.exists()):
        shutil.rmtree(root, ignore_errors=True)
        built = build(root, rows, chunk)
        say(f"{rows}.build.rows", built["rows"])
        say(f"{rows}.build.generate_s + append_s", round(built["generate_s"] + built["append_s"], 1))
        t0 = time.perf_counter()
        summary = lake.open(root).optimize()
        say(f"{rows}.optimize_s", round(time.perf_counter() - t0, 1))
        say(f"{rows}.series_summary.rows", summary["series_summary"]["rows"])
    for name in ("priors", "follow_up"):
        mine, hand = measure("lake", root, name), measure("hand", root, name)
        assert mine["rows"] == hand["rows"], f"{name}: {mine['rows']} rows against {hand['rows']} by hand"
        for temp in ("cold", "query_cold", "warm"):
            say(f"{rows}.{name}.{temp}_s lake / by hand", f"{mine[temp + '_s']:.3f} / {hand[temp + '_s']:.3f}")
            say(f"{rows}.{name}.{temp} ratio lake/hand", round(mine[temp + "_s"] / hand[temp + "_s"], 2))
        say(f"{rows}.{name}.rows", int(mine["rows"]))
    timed = {name: measure("lake", root, name) for name in ("series_live", "series", "studies")}
    for name, t in timed.items():
        say(
            f"{rows}.{name}.cold_s / query_cold_s / warm_s",
            f"{t['cold_s']:.3f} / {t['query_cold_s']:.3f} / {t['warm_s']:.3f}",
        )
    for temp in ("cold", "warm"):
        say(
            f"{rows}.series before/after optimize ({temp})",
            round(timed["series_live"][f"{temp}_s"] / timed["series"][f"{temp}_s"], 1),
        )
        say(
            f"{rows}.series/studies after optimize ({temp})",
            round(timed["series"][f"{temp}_s"] / timed["studies"][f"{temp}_s"], 2),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="instances (repeat for several sizes)")
    parser.add_argument("--chunk", type=int, default=250_000, help="rows per append (an ingest batch)")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="measure a lake kept in --dir by an earlier --keep run")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lake", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--query", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        global PRIORS_SQL
        PRIORS_SQL = _priors_by_hand()
        print(json.dumps(child(args.child, args.lake, args.query)))
        return

    base = args.dir or Path(tempfile.mkdtemp(prefix="lake-cohorts-"))
    base.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LAKE_HOME", str(base / "lake-home"))
    results: dict[str, object] = {"cpus": os.cpu_count()}

    def show(label: str, value: object) -> None:
        results[label] = value
        print(f"{label:<52} {value}", flush=True)

    try:
        for rows in args.rows or [1_000_000]:
            run_size(base, rows, args.chunk, show, args.reuse)
            if not args.keep:
                shutil.rmtree(base / f"lake-{rows}", ignore_errors=True)
    finally:
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
