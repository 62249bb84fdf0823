"""Header tables at scale: cold query times on synthetic instances, against the naive design.

    .venv/bin/python benchmarks/headers.py --rows 1000000 [--dir /tmp/lake-bench] [--keep]

Builds a lake whose ``instances`` table holds ``--rows`` realistic synthetic rows
(``lake.testing.rows``), appended in ingest-sized chunks and then compacted by ``lake optimize``.
Every query then runs in a fresh Python process that opens the lake ("cold": connection, views,
macros and file metadata included) and once more warm. Peers measured in the same run:

- the naive design: one DICOM JSON string per instance (only ``header_json``), every filter and
  aggregate through DuckDB's JSON functions;
- the ``dicom_*`` macros over ``header_json`` against an ``elements`` table (one row per element
  with path, tag, VR and first value), built from a sample and extrapolated for its size;
- the ``series`` view computed at query time against the same view materialised as a table;
- header lookup by SOPInstanceUID before and after ``optimize`` (bloom filter, sorted files).

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
from pathlib import Path

import duckdb

QUERIES = {
    "longitudinal": """
        WITH ct AS (
            SELECT PatientID, StudyInstanceUID, min(StudyDate) AS d FROM instances
            WHERE Modality = 'CT' GROUP BY PatientID, StudyInstanceUID
        )
        SELECT PatientID, count(*) AS ct_studies, date_diff('day', min(d), max(d)) AS span_days,
               list(d ORDER BY d) AS dates
        FROM ct GROUP BY PatientID
        HAVING count(*) >= 2 AND date_diff('day', min(d), max(d)) >= 180""",
    "study_aggregates": "SELECT * FROM studies",
    "series_view": "SELECT * FROM series",
    "typed_filter": "SELECT count(*) FROM instances WHERE Modality = 'CT' AND KVP >= 120",
    "json_filter": """SELECT count(*) FROM instances
        WHERE json_extract_string(header_json, '$."00080060".Value[0]') = 'CT'
          AND TRY_CAST(json_extract_string(header_json, '$."00180060".Value[0]') AS DOUBLE) >= 120""",
    "macro_filter": """SELECT count(*) FROM instances
        WHERE dicom_value(header_json, 'Modality') = 'CT' AND dicom_number(header_json, 'KVP') >= 120""",
    "macro_private": "SELECT count(*) FROM instances WHERE dicom_value(header_json, '(0029,1010)') = 'proto-7'",
    "macro_nested": """SELECT count(*) FROM instances WHERE dicom_value(header_json,
        'RequestAttributesSequence.RequestedProcedureCodeSequence.CodeMeaning') IS NULL""",
    "macro_has": """SELECT count(*) FROM instances
        WHERE dicom_has(header_json, 'RadiopharmaceuticalInformationSequence')""",
}

NAIVE = {
    "longitudinal": """
        WITH i AS (
            SELECT json_extract_string(h, '$."00100020".Value[0]') AS PatientID,
                   json_extract_string(h, '$."0020000D".Value[0]') AS StudyInstanceUID,
                   strptime(json_extract_string(h, '$."00080020".Value[0]'), '%Y%m%d')::DATE AS StudyDate,
                   json_extract_string(h, '$."00080060".Value[0]') AS Modality
            FROM naive
        ), ct AS (
            SELECT PatientID, StudyInstanceUID, min(StudyDate) AS d FROM i WHERE Modality = 'CT' GROUP BY ALL
        )
        SELECT PatientID, count(*) AS ct_studies, date_diff('day', min(d), max(d)) AS span_days,
               list(d ORDER BY d) AS dates
        FROM ct GROUP BY PatientID
        HAVING count(*) >= 2 AND date_diff('day', min(d), max(d)) >= 180""",
    "study_aggregates": """
        WITH i AS (
            SELECT json_extract_string(h, '$."00100020".Value[0]') AS PatientID,
                   json_extract_string(h, '$."0020000D".Value[0]') AS StudyInstanceUID,
                   json_extract_string(h, '$."0020000E".Value[0]') AS SeriesInstanceUID,
                   strptime(json_extract_string(h, '$."00080020".Value[0]'), '%Y%m%d')::DATE AS StudyDate,
                   json_extract_string(h, '$."00081030".Value[0]') AS StudyDescription,
                   json_extract_string(h, '$."00080060".Value[0]') AS Modality
            FROM naive
        ), s AS (
            SELECT StudyInstanceUID, any_value(PatientID) AS PatientID, min(StudyDate) AS StudyDate,
                   any_value(StudyDescription) AS StudyDescription,
                   list_sort(list_distinct(list(Modality))) AS modalities,
                   count(DISTINCT SeriesInstanceUID) AS series_count, count(*) AS instance_count
            FROM i GROUP BY StudyInstanceUID
        )
        SELECT *, date_diff('day', min(StudyDate) OVER (PARTITION BY PatientID), StudyDate) AS days_from_first_study
        FROM s""",
    "typed_filter": """SELECT count(*) FROM naive
        WHERE json_extract_string(h, '$."00080060".Value[0]') = 'CT'
          AND TRY_CAST(json_extract_string(h, '$."00180060".Value[0]') AS DOUBLE) >= 120""",
    "header_by_uid": "SELECT h FROM naive WHERE json_extract_string(h, '$.\"00080018\".Value[0]') = '{uid}'",
}


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build(root: Path, rows: int, chunk: int) -> dict[str, float]:
    """A lake with ``rows`` synthetic instances in ingest-sized appends; returns timings."""
    import lake
    from lake.catalog.tables import append
    from lake.testing.rows import synthetic_instances

    os.environ.setdefault("LAKE_HOME", str(root.parent / "lake-home"))
    lk = lake.init(root)
    table = lk.paths.table("instances")
    t0 = time.perf_counter()
    gen = 0.0
    n = 0
    it = synthetic_instances(rows, chunk_rows=chunk)
    while True:
        g = time.perf_counter()
        batch = next(it, None)
        gen += time.perf_counter() - g
        if batch is None:
            break
        append(table, batch)
        n += len(batch)
    return {"rows": n, "generate_s": gen, "append_s": time.perf_counter() - t0 - gen, "appended_bytes": _du(table)}


def write_naive(root: Path, out: Path) -> float:
    """The naive peer: a single Parquet file of one JSON string per instance (zstd)."""
    from lake.catalog.tables import snapshot_files

    files = snapshot_files(root / "tables" / "instances")
    t0 = time.perf_counter()
    con = duckdb.connect()
    file_list = ", ".join(f"'{f}'" for f in files)
    con.execute(
        f"COPY (SELECT header_json AS h FROM read_parquet([{file_list}])) TO '{out}' "
        "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"
    )
    return time.perf_counter() - t0


def write_elements(root: Path, out: Path, sample: int) -> dict[str, float]:
    """The ``elements`` peer over the first ``sample`` instances: one row per element at any depth."""
    from lake.catalog.macros import install
    from lake.catalog.tables import snapshot_files

    files = snapshot_files(root / "tables" / "instances")
    con = duckdb.connect()
    install(con)
    file_list = ", ".join(f"'{f}'" for f in files)
    t0 = time.perf_counter()
    con.execute(
        f"""COPY (
            SELECT i.SOPInstanceUID, t.path || '."' || t.key || '"' AS path, t.key AS tag, d.keyword,
                   json_extract_string(t.value, '$.vr') AS vr, json_extract_string(t.value, '$.Value[0]') AS value
            FROM (SELECT SOPInstanceUID, header_json FROM read_parquet([{file_list}]) LIMIT {sample}) i,
                 json_tree(i.header_json) t
            LEFT JOIN dicom_dictionary d ON d.tag = t.key
            WHERE t.type = 'OBJECT' AND regexp_full_match(t.key, '[0-9A-F]{{8}}')
            ORDER BY tag, value, SOPInstanceUID
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"""
    )
    seconds = time.perf_counter() - t0
    n = con.execute(f"SELECT count(*) FROM '{out}'").fetchall()[0][0]
    return {"elements_build_s": seconds, "elements_rows": n, "elements_bytes": out.stat().st_size}


# -- the cold measurement, run in a child process -------------------------------------------------
def child(args: argparse.Namespace) -> None:
    timings: dict[str, float] = {}
    if args.kind == "lake":
        i0 = time.perf_counter()
        import lake
        from lake.catalog.query import fetch_arrow

        # "cold" starts after the imports (the naive peer imports only duckdb): open, views, first query
        t0 = time.perf_counter()
        timings["import_s"] = t0 - i0
        lk = lake.open(args.lake)
        if args.query == "header_by_uid":  # needs no DuckDB connection after optimize (header_index)
            opened = time.perf_counter()
            uids = json.loads(args.uids)
            lk.header(uids[0])
            timings["cold_s"] = time.perf_counter() - t0
            timings["query_cold_s"] = time.perf_counter() - opened
            warm = []
            for uid in uids[1:]:
                w = time.perf_counter()
                lk.header(uid)
                warm.append(time.perf_counter() - w)
            timings["warm_s"] = sorted(warm)[len(warm) // 2]
        else:
            con = lk.connection()
            opened = time.perf_counter()
            sql = QUERIES.get(args.query, args.query)
            fetch_arrow(con, sql)
            timings["cold_s"] = time.perf_counter() - t0
            timings["query_cold_s"] = time.perf_counter() - opened
            w = time.perf_counter()
            fetch_arrow(con, sql)
            timings["warm_s"] = time.perf_counter() - w
    else:
        t0 = time.perf_counter()
        con = duckdb.connect()
        con.execute(f"CREATE VIEW {args.kind} AS SELECT * FROM read_parquet('{args.lake}')")
        if args.kind == "naive":
            sql = NAIVE[args.query].replace("{uid}", json.loads(args.uids or '[""]')[0])
        else:
            sql = args.query
        con.sql(sql).fetchall()
        timings["cold_s"] = time.perf_counter() - t0
        w = time.perf_counter()
        con.sql(sql).fetchall()
        timings["warm_s"] = time.perf_counter() - w
    print(json.dumps(timings))


def cold(kind: str, target: Path, query: str, uids: list[str] | None = None) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", kind, "--lake", str(target), "--query", query]
    if uids:
        cmd += ["--uids", json.dumps(uids)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000, help="rows per append (an ingest batch)")
    parser.add_argument("--elements-sample", type=int, default=50_000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--core-only",
        action="store_true",
        help="only the lake's own goals (longitudinal, study aggregates, typed filter, header by UID): "
        "skips the JSON scans and peers, which take minutes each at 10M rows",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lake", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--query", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--uids", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.kind = args.child
        child(args)
        return

    base = args.dir or Path(tempfile.mkdtemp(prefix="lake-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    root = base / f"lake-{args.rows}"
    if root.exists():
        shutil.rmtree(root)
    results: dict[str, object] = {"rows_requested": args.rows, "cpus": os.cpu_count()}

    def show(label: str, value: object) -> None:
        results[label] = value
        print(f"{label:<44} {value}", flush=True)

    build_t = build(root, args.rows, args.chunk)
    for k, v in build_t.items():
        show(f"build.{k}", round(v, 2) if isinstance(v, float) else v)
    rows = int(build_t["rows"])
    import lake
    from lake.catalog.tables import snapshot_files

    lk = lake.open(root)
    uids = [r[0] for r in lk.sql("SELECT SOPInstanceUID FROM instances USING SAMPLE 6 ROWS").rows()]
    before = cold("lake", root, "header_by_uid", uids)
    show("header_by_uid.unoptimized.cold_s", round(before["cold_s"], 4))
    show("header_by_uid.unoptimized.warm_s", round(before["warm_s"], 4))

    t0 = time.perf_counter()
    lk.optimize()
    show("optimize_s", round(time.perf_counter() - t0, 2))
    table = root / "tables" / "instances"
    files = snapshot_files(table)
    show("optimized.files", len(files))
    show("optimized.bytes", sum(os.path.getsize(f) for f in files))
    show("optimized.bytes_per_instance", round(sum(os.path.getsize(f) for f in files) / rows, 1))

    core = ("longitudinal", "study_aggregates", "typed_filter")
    if args.core_only:
        for name in core:
            timings_core = cold("lake", root, name)
            show(f"{name}.cold_s (open + query)", round(timings_core["cold_s"], 4))
            show(f"{name}.query_cold_s", round(timings_core["query_cold_s"], 4))
            show(f"{name}.warm_s", round(timings_core["warm_s"], 4))
        after = cold("lake", root, "header_by_uid", uids)
        show("header_by_uid.cold_s (open + query)", round(after["cold_s"], 4))
        show("header_by_uid.query_cold_s", round(after["query_cold_s"], 4))
        show("header_by_uid.warm_s", round(after["warm_s"], 4))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
        if not args.keep and args.dir is None:
            shutil.rmtree(base)
        return

    naive = base / "naive.parquet"
    show("naive.write_s", round(write_naive(root, naive), 2))
    show("naive.bytes", naive.stat().st_size)

    timings: dict[str, dict[str, float]] = {}
    for name in QUERIES:
        timings[name] = cold("lake", root, name)
        show(f"{name}.cold_s (open + query)", round(timings[name]["cold_s"], 4))
        show(f"{name}.query_cold_s", round(timings[name]["query_cold_s"], 4))
        show(f"{name}.warm_s", round(timings[name]["warm_s"], 4))
    timings["header_by_uid"] = cold("lake", root, "header_by_uid", uids)
    show("header_by_uid.cold_s (incl. open)", round(timings["header_by_uid"]["cold_s"], 4))
    show("header_by_uid.query_cold_s", round(timings["header_by_uid"]["query_cold_s"], 4))
    show("header_by_uid.warm_s", round(timings["header_by_uid"]["warm_s"], 4))
    open_s = cold("lake", root, "SELECT 1")
    show("open_lake_only.cold_s", round(open_s["cold_s"], 4))
    show("import_lake_package_s (not in cold)", round(open_s["import_s"], 4))

    for name in NAIVE:
        t = cold("naive", naive, name, uids if name == "header_by_uid" else None)
        mine = timings[name]
        show(f"naive.{name}.cold_s", round(t["cold_s"], 4))
        show(f"ratio naive/lake {name} (cold)", round(t["cold_s"] / mine["cold_s"], 1))
        show(f"ratio naive/lake {name} (warm)", round(t["warm_s"] / max(mine["warm_s"], 1e-9), 1))
    show(
        "ratio json/typed filter (warm)", round(timings["json_filter"]["warm_s"] / timings["typed_filter"]["warm_s"], 1)
    )
    show(
        "ratio macro/typed filter (warm)",
        round(timings["macro_filter"]["warm_s"] / timings["typed_filter"]["warm_s"], 1),
    )

    # elements table peer, on a sample, against the macro on the same sample size
    elements = base / "elements.parquet"
    sample = min(args.elements_sample, rows)
    el = write_elements(root, elements, sample)
    for k, v in el.items():
        show(f"elements.{k}", round(v, 2) if isinstance(v, float) else v)
    show("elements.bytes_per_instance", round(el["elements_bytes"] / sample, 1))
    show("elements.projected_bytes_at_rows", int(el["elements_bytes"] / sample * rows))
    show("elements.projected_build_s_at_rows", round(el["elements_build_s"] / sample * rows, 1))
    el_private = cold(
        "elements",
        elements,
        "SELECT count(DISTINCT SOPInstanceUID) FROM elements WHERE tag = '00291010' AND value = 'proto-7'",
    )
    macro_sample = cold(
        "lake",
        root,
        f"SELECT count(*) FROM (SELECT header_json FROM instances LIMIT {sample}) "
        "WHERE dicom_value(header_json, '(0029,1010)') = 'proto-7'",
    )
    show(f"elements.private_filter_{sample}.warm_s", round(el_private["warm_s"], 4))
    show(f"macro.private_filter_{sample}.warm_s", round(macro_sample["warm_s"], 4))
    show(
        "macro private filter, projected to all rows (warm_s)",
        round(macro_sample["warm_s"] / sample * rows, 3),
    )

    # series geometry: view at query time vs materialised
    series_tbl = base / "series.parquet"
    from lake.catalog.query import connect  # lk.connection() is read-only; this COPY writes outside the lake

    con = connect(lk.paths)
    t0 = time.perf_counter()
    con.execute(f"COPY (SELECT * FROM series) TO '{series_tbl}' (FORMAT parquet, COMPRESSION zstd)")
    show("series.materialise_s", round(time.perf_counter() - t0, 3))
    mat = cold("series_tbl", series_tbl, "SELECT * FROM series_tbl")
    show("series.materialised.cold_s", round(mat["cold_s"], 4))
    show("ratio series view/materialised (warm)", round(timings["series_view"]["warm_s"] / max(mat["warm_s"], 1e-9), 1))

    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if not args.keep and args.dir is None:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
