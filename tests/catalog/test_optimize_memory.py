"""``lake optimize`` within a small memory budget writes the same lake as without one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lake
from lake import memory
from lake.catalog import header_index, ordered, series_summary
from lake.catalog.optimize import OPTIMIZED_ROW_GROUP_ROWS, optimize
from lake.catalog.tables import append, snapshot_files
from lake.memory import MemoryBudget
from lake.testing.rows import synthetic_instances

ROWS = 60_000
TINY = MemoryBudget(memory.MINIMUM)


#: Both ways of sorting by ranges: a query per range, and one pass splitting the rows into files.
RANGE_MODES = {"query-per-range": 10**9, "split-to-files": 1}


@pytest.fixture(scope="module", params=list(RANGE_MODES))
def twin_lakes(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """The same appended lake twice: optimized within the smallest budget, and unbounded."""
    base = tmp_path_factory.mktemp("optimize-memory")
    tiny = base / "tiny"
    lk = lake.init(tiny)
    for chunk in synthetic_instances(ROWS, seed=11, chunk_rows=15_000):
        append(lk.paths.table("instances"), chunk)
    unbounded = base / "unbounded"
    shutil.copytree(tiny, unbounded)
    with pytest.MonkeyPatch.context() as patch, memory.use(TINY):
        patch.setattr(ordered, "SPLIT_FROM_PARTS", RANGE_MODES[request.param])
        optimize(tiny)
    with memory.use(MemoryBudget(None)):
        optimize(unbounded)
    return tiny, unbounded


def _table(root: Path, name: str) -> pa.Table:
    """Every row of the table's snapshot in file and row order."""
    files = sorted(snapshot_files(root / "tables" / name), key=lambda f: Path(f).name)
    return pa.concat_tables([pq.read_table(f) for f in files])


@pytest.mark.parametrize("name", ["instances", header_index.NAME, series_summary.NAME])
def test_the_same_rows_in_the_same_order(twin_lakes: tuple[Path, Path], name: str) -> None:
    tiny, unbounded = twin_lakes
    got, expected = _table(tiny, name), _table(unbounded, name)
    assert got.num_rows == expected.num_rows > 0
    assert got.equals(expected)


def test_the_sort_was_cut_into_ranges_and_row_groups_fit_the_budget(twin_lakes: tuple[Path, Path]) -> None:
    tiny, unbounded = twin_lakes
    files = snapshot_files(tiny / "tables" / "instances")
    row_bytes = ordered.row_bytes(files)
    # the budget forces the range-partitioned sort (the premise of this test)
    assert ROWS * row_bytes * ordered.SORT_OVERHEAD > TINY.duckdb_bytes  # type: ignore[operator]
    budgeted = TINY.batch_rows(row_bytes, OPTIMIZED_ROW_GROUP_ROWS, memory.ROW_GROUP_SHARE)
    assert budgeted < OPTIMIZED_ROW_GROUP_ROWS
    for path in files:
        meta = pq.read_metadata(path)
        key = [meta.schema.column(i).name for i in range(meta.num_columns)].index("SOPInstanceUID")
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        # sized from the appended files' rows (a little wider than these): about the budgeted size
        assert sizes[0] < OPTIMIZED_ROW_GROUP_ROWS and abs(sizes[0] - budgeted) < budgeted // 10
        assert all(s == sizes[0] for s in sizes[:-1]) and sizes[-1] <= sizes[0]
        for g in range(meta.num_row_groups):
            column = meta.row_group(g).column(key)
            assert column.statistics is not None and column.statistics.has_min_max
            assert column.bloom_filter_offset is not None and column.bloom_filter_offset > 0
    # without a budget the row groups are the usual size
    [full] = snapshot_files(unbounded / "tables" / "instances")
    meta = pq.read_metadata(full)
    assert meta.row_group(0).num_rows == min(meta.num_rows, OPTIMIZED_ROW_GROUP_ROWS)


def test_lookups_and_views_answer_the_same(twin_lakes: tuple[Path, Path]) -> None:
    tiny, unbounded = twin_lakes
    a, b = lake.open(tiny), lake.open(unbounded)
    uids = [
        r[0] for r in b.sql("SELECT SOPInstanceUID FROM instances ORDER BY SOPInstanceUID LIMIT 3 OFFSET 777").rows()
    ]
    assert [a.header(u) for u in uids] == [b.header(u) for u in uids]
    assert a.sql("SELECT * FROM studies ORDER BY StudyInstanceUID").equals(
        b.sql("SELECT * FROM studies ORDER BY StudyInstanceUID")
    )


@pytest.mark.parametrize("mode", list(RANGE_MODES))
def test_ranges_keep_nulls_last_and_cover_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setattr(ordered, "SPLIT_FROM_PARTS", RANGE_MODES[mode])
    data = pa.table({"k": ["b", None, "a", "c", "b", None, "d", "a"], "v": list(range(8))})
    path = tmp_path / "t.parquet"
    pq.write_table(data, path)
    source = ordered.parquet_source([str(path)])
    with memory.use(TINY), ordered.sorting_connection("test") as con:
        # rows x bytes large enough to ask for 4 ranges
        parts = int(TINY.duckdb_bytes // (8 * ordered.SORT_OVERHEAD)) + 1  # type: ignore[operator]
        out = pa.Table.from_batches(list(ordered.sorted_batches(con, source, "k, v", ["k", "v"], parts * 4, 8, 1024)))
    assert out.column("k").to_pylist() == ["a", "a", "b", "b", "c", "d", None, None]
    assert out.column("v").to_pylist() == [2, 7, 0, 4, 3, 6, 1, 5]
