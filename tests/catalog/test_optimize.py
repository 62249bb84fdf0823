"""``lake optimize``: fewer, sorted files with a bloom filter on the key; views and lookups keep working."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import lake
from lake.catalog import header_index, lookup
from lake.catalog.tables import append, delete_where, snapshot_files
from lake.cli import main
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
