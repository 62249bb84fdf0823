"""``lake optimize``: fewer, sorted files with a bloom filter on the key; views and lookups keep working."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lake
from lake.catalog import header_index, lookup, series_summary
from lake.catalog.query import open_views
from lake.catalog.tables import append, delete_where, snapshot_files
from lake.cli import main
from lake.config import LakePaths
from lake.errors import InvalidUIDError, NotInLakeError
from lake.testing.rows import synthetic_instances


@pytest.fixture()
def small_lake(tmp_path: Path) -> Path:
    root = tmp_path / "lk"
    lk = lake.init(root)
    for chunk in synthetic_instances(3000, seed=7, chunk_rows=700):
        append(lk.paths.table("instances"), chunk)
    return root


def test_optimize_compacts_sorts_and_records_a_run(small_lake: Path) -> None:
    lk = lake.open(small_lake)
    table = lk.paths.table("instances")
    before_files = snapshot_files(table)
    assert len(before_files) > 1
    before = lk.sql(
        "SELECT count(*) AS n, count(DISTINCT SOPInstanceUID) AS u, sum(InstanceNumber) AS s FROM instances"
    )
    studies_before = lk.sql("SELECT * FROM studies ORDER BY StudyInstanceUID")
    uid = lk.sql("SELECT SOPInstanceUID FROM instances ORDER BY SOPInstanceUID LIMIT 1 OFFSET 100")[0, 0]
    header_before = lk.header(uid)
    old_con = lk.connection()

    summary = lake.open(small_lake).optimize()
    assert summary["instances"]["files_before"] == len(before_files)
    assert summary["instances"]["files_after"] == 1
    assert summary["instances"]["rows"] == before["n"][0]

    after_files = snapshot_files(table)
    assert len(after_files) == 1 and not set(after_files) & set(before_files)
    # a connection opened on the previous snapshot still reads it (old files are not deleted)
    assert old_con.execute("SELECT count(*) FROM instances").fetchall()[0][0] == before["n"][0]

    lk2 = lake.open(small_lake)
    assert lk2.sql(
        "SELECT count(*) AS n, count(DISTINCT SOPInstanceUID) AS u, sum(InstanceNumber) AS s FROM instances"
    ).equals(before)
    assert lk2.sql("SELECT * FROM studies ORDER BY StudyInstanceUID").equals(studies_before)
    assert lk2.header(uid) == header_before

    parquet = pq.ParquetFile(after_files[0])
    meta = parquet.metadata
    patients = parquet.read(columns=["PatientID"]).column(0).to_pylist()
    assert patients == sorted(patients), "rows are sorted by patient"
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    key = names.index("SOPInstanceUID")
    for rg in range(meta.num_row_groups):
        column = meta.row_group(rg).column(key)
        assert column.compression == "ZSTD"
        assert column.statistics is not None and column.statistics.has_min_max
        assert column.bloom_filter_offset is not None and column.bloom_filter_offset > 0

    runs = lk2.sql("SELECT operation, counts FROM runs WHERE operation = 'optimize'")
    assert len(runs) == 1
    assert json.loads(runs["counts"][0])["instances"]["files_after"] == 1

    # a second optimize has nothing to do
    again = lk2.optimize()
    assert again["instances"]["skipped"] is True
    assert snapshot_files(table) == after_files


def test_optimize_command_line(small_lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optimize", "--lake", str(small_lake)]) == 0
    out = capsys.readouterr().out
    assert "instances:" in out and "-> 1 file(s)" in out
    assert main(["optimize", "--lake", str(small_lake.parent / "missing")]) == 2


def test_header_lookup(small_lake: Path) -> None:
    lk = lake.open(small_lake)
    uid, patient = lk.sql("SELECT SOPInstanceUID, PatientID FROM instances LIMIT 1 OFFSET 42").row(0)
    header = lk.header(uid)
    assert header["00080018"]["Value"] == [uid]
    assert header["00100020"]["Value"] == [patient]
    with pytest.raises(NotInLakeError):
        lk.header("2.25.1")
    with pytest.raises(InvalidUIDError):
        lk.header("1.2'; DROP TABLE x; --")


def test_header_index_answers_lookups_and_newer_instances_are_still_found(
    small_lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lk = lake.open(small_lake)
    lk.optimize()
    ranges = header_index.range_map(lk.paths)
    assert ranges is not None and ranges.files
    index_files = snapshot_files(lk.paths.table("header_index"))
    uids = pq.read_table(index_files[0], columns=["SOPInstanceUID"]).column(0).to_pylist()
    assert uids == sorted(uids) and len(uids) == lk.sql("SELECT count(*) FROM instances")[0, 0]
    meta = pq.read_metadata(index_files[0])
    assert all(meta.row_group(i).num_rows <= header_index.ROW_GROUP_ROWS for i in range(meta.num_row_groups))

    expected = dict(lk.sql("SELECT SOPInstanceUID, header_json FROM instances WHERE InstanceNumber % 37 = 1").rows())
    assert expected
    scans: list[str] = []
    real_scan = lookup._scan
    monkeypatch.setattr(lookup, "_scan", lambda con, source, uid: scans.append(source) or real_scan(con, source, uid))
    for uid, text in expected.items():
        assert lk.header(uid) == json.loads(text)
    assert scans == [], "every covered instance came from the index"

    # instances ingested after the optimize: found in the files the index does not cover
    newer = next(synthetic_instances(50, seed=99, chunk_rows=50))
    append(lk.paths.table("instances"), newer)
    new_uid = newer.column("SOPInstanceUID")[0].as_py()
    assert lk.header(new_uid)["00080018"]["Value"] == [new_uid]
    assert len(scans) == 1 and "read_parquet" in scans[0] and "instances" not in scans[0].split("[")[0]
    with pytest.raises(NotInLakeError):
        lk.header("2.25.12345")

    # a deletion makes the range map stale: lookups fall back to instances and stay right
    gone = next(iter(expected))
    delete_where(lk.paths.table("header_index"), f"SOPInstanceUID = '{gone}'")
    assert header_index.range_map(lk.paths) is None
    assert lk.header(gone) == json.loads(expected[gone])
    # the next optimize rebuilds the index over every instance
    lk.optimize()
    ranges = header_index.range_map(lk.paths)
    assert ranges is not None
    assert header_index.find(ranges, new_uid) is not None and header_index.find(ranges, gone) is not None
    assert lk.sql("SELECT count(*) FROM header_index")[0, 0] == lk.sql("SELECT count(*) FROM instances")[0, 0]
    assert not set(snapshot_files(lk.paths.table("header_index"))) & set(index_files)


def test_a_table_optimized_into_several_files_is_not_rewritten_again(
    small_lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lake.catalog import optimize as optimize_module

    monkeypatch.setattr(optimize_module, "TARGET_FILE_SIZE", 100_000)  # several files, as at scale
    monkeypatch.setattr(optimize_module, "OPTIMIZED_ROW_GROUP_ROWS", 512)
    lk = lake.open(small_lake)
    lk.optimize()
    files = snapshot_files(lk.paths.table("instances"))
    assert len(files) > 1
    patients = [pq.read_table(f, columns=["PatientID"]).column(0).to_pylist() for f in files]
    flat = [p for part in patients for p in part]
    assert flat == sorted(flat), "files and rows follow the sort order"
    again = lk.optimize()
    assert again["instances"]["skipped"] is True and again["header_index"]["skipped"] is True
    assert snapshot_files(lk.paths.table("instances")) == files


# -- the series view, materialised by optimize ------------------------------------------------------
def _series_live(root: Path) -> pl.DataFrame:
    """The series view computed from every instance, as before series_summary existed."""
    con = open_views(LakePaths(root), use_materialised=False)[0]
    try:
        return pl.from_arrow(con.sql(f"SELECT * FROM series ORDER BY {SERIES_ORDER}").arrow())  # type: ignore[return-value]
    finally:
        con.close()


def _series(root: Path) -> pl.DataFrame:
    return lake.open(root).sql(f"SELECT * FROM series ORDER BY {SERIES_ORDER}")


def _live_instances(root: Path) -> int:
    return int(lake.open(root).sql(f"SELECT count(*) FROM {series_summary.LIVE_INSTANCES}")[0, 0])


SERIES_ORDER = "SeriesInstanceUID, StudyInstanceUID, PatientID"


def test_series_view_is_materialised_by_optimize_and_stays_exact_after_ingest(small_lake: Path) -> None:
    lk = lake.open(small_lake)
    before = _series(small_lake)
    assert len(before) > 10 and before.equals(_series_live(small_lake))
    everything = lk.sql("SELECT count(*) FROM instances")[0, 0]
    assert _live_instances(small_lake) == everything, "not optimized yet: every series is computed live"

    summary = lk.optimize()
    assert summary[series_summary.NAME]["rows"] == len(before)
    assert series_summary.is_current(lk.paths)
    assert _live_instances(small_lake) == 0, "after optimize the view reads only the stored rows"
    assert lk.sql(f"SELECT count(*) FROM {series_summary.MATERIALISED}")[0, 0] == len(before)
    after = _series(small_lake)
    assert after.schema == before.schema and after.equals(before)

    # another ingest: two instances join an existing series (its geometry changes), new series arrive
    grown = lk.sql(
        "SELECT SeriesInstanceUID FROM series WHERE instance_count >= 3 AND distinct_positions >= 3 "
        "ORDER BY SeriesInstanceUID LIMIT 1"
    )[0, 0]
    old = pq.read_table(snapshot_files(lk.paths.table("instances"))).to_pylist()
    extra = [r for r in old if r["SeriesInstanceUID"] == grown][:2]
    for k, r in enumerate(extra):
        r["SOPInstanceUID"] += f"9{k}"
        r["ImagePositionPatient"] = [p + 1000.0 + k for p in r["ImagePositionPatient"]]
    schema = pq.read_schema(snapshot_files(lk.paths.table("instances"))[0])
    append(lk.paths.table("instances"), pa.Table.from_pylist(extra, schema=schema))
    newer = next(synthetic_instances(200, seed=99, chunk_rows=200))
    append(lk.paths.table("instances"), newer)

    live = _series_live(small_lake)
    assert len(live) > len(before)
    changed = live.filter(pl.col("SeriesInstanceUID") == grown)
    assert changed["instance_count"][0] == before.filter(pl.col("SeriesInstanceUID") == grown)["instance_count"][0] + 2
    assert _series(small_lake).equals(live)
    new_series = set(newer.column("SeriesInstanceUID").to_pylist()) | {grown}
    expected_live = lk.sql(
        "SELECT count(*) FROM instances WHERE SeriesInstanceUID IN (SELECT unnest(?::VARCHAR[]))", [list(new_series)]
    )[0, 0]
    assert _live_instances(small_lake) == expected_live, "only the touched series are computed live"
    assert not series_summary.is_current(lk.paths)

    # the next optimize covers them all again
    again = lk.optimize()
    assert again[series_summary.NAME]["skipped"] is False
    assert _live_instances(small_lake) == 0 and _series(small_lake).equals(live)
    assert lk.optimize()[series_summary.NAME]["skipped"] is True


def test_a_deletion_makes_the_series_view_compute_live_and_stay_exact(small_lake: Path) -> None:
    lk = lake.open(small_lake)
    lk.optimize()
    patient = lk.sql("SELECT min(PatientID) FROM instances")[0, 0]
    # as lake forget does: the patient's rows go from instances and from the summary
    delete_where(lk.paths.table("instances"), f"PatientID = '{patient}'")
    assert series_summary.coverage(lk.paths) is not None  # the summary alone is not enough to tell
    assert _series(small_lake).equals(_series_live(small_lake))
    assert lk.sql("SELECT count(*) FROM series WHERE PatientID = ?", [patient])[0, 0] == 0
    delete_where(lk.paths.table(series_summary.NAME), f"PatientID = '{patient}'")
    assert series_summary.coverage(lk.paths) is None, "a later commit to the summary makes its map stale"
    assert _series(small_lake).equals(_series_live(small_lake))
    assert _live_instances(small_lake) == lk.sql("SELECT count(*) FROM instances")[0, 0]


def test_series_summary_columns_are_the_series_view_columns(small_lake: Path) -> None:
    from lake.catalog.query import view_definitions
    from lake.headers.schema import load_table_schema

    lk = lake.open(small_lake)
    lk.optimize()
    schema = load_table_schema(series_summary.NAME)
    view = next(v for v in view_definitions() if v.name == "series")
    assert [(c.name, c.description) for c in schema.columns] == list(view.columns)
    described = lk.sql("DESCRIBE series").select("column_name", "column_type").rows()
    assert described == [(c.name, c.type) for c in schema.columns]
    stored = lk.sql(f"DESCRIBE {series_summary.NAME}").select("column_name", "column_type").rows()
    assert stored == described
