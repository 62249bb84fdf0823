"""The conformance suite every :class:`lake.storage.Storage` backend passes (as zarr's ``StoreTests``).

Subclass :class:`StorageTests` in a test module and provide a ``storage`` fixture giving an empty
storage; pytest collects the inherited tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest

from lake.errors import LeaseLostError, LockTimeoutError, StorageNotFoundError, StoragePathError
from lake.storage import Storage
from lake.storage.lease import acquire


class FakeClock:
    """A wall clock tests move by hand, so lease expiry never depends on real time."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _parallel(count: int, work: Callable[[int], object]) -> list[object]:
    results: list[object] = [None] * count
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


class StorageTests:
    """Behaviour every backend must have. The ``storage`` fixture is the subclass's."""

    def test_write_read_head_list_delete(self, storage: Storage) -> None:
        assert storage.head("tables/a/x.parquet") is None
        info = storage.write("tables/a/x.parquet", b"abc")
        assert (info.path, info.size) == ("tables/a/x.parquet", 3) and info.version
        storage.write("tables/ab/y", b"12345")
        storage.write("lake.json", b"{}")
        assert storage.read("tables/a/x.parquet") == b"abc"
        head = storage.head("tables/a/x.parquet")
        assert head is not None and head.size == 3 and head.version == info.version
        assert [i.path for i in storage.list()] == ["lake.json", "tables/a/x.parquet", "tables/ab/y"]
        assert [i.path for i in storage.list("tables/a")] == ["tables/a/x.parquet"]  # not tables/ab
        assert [i.size for i in storage.list("tables")] == [3, 5]
        assert storage.delete("tables/a/x.parquet") is True
        assert storage.delete("tables/a/x.parquet") is False
        assert storage.head("tables/a/x.parquet") is None
        with pytest.raises(StorageNotFoundError):
            storage.read("tables/a/x.parquet")
        with pytest.raises(FileNotFoundError):  # the built-in it specialises
            storage.read("nothing/here")

    def test_ranges_and_versioned_reads(self, storage: Storage) -> None:
        storage.write("pixels/s/c/0", bytes(range(200)))
        assert storage.read_range("pixels/s/c/0", 10, 14) == bytes([10, 11, 12, 13])
        assert storage.read_range("pixels/s/c/0", 5, 5) == b""
        with pytest.raises(ValueError):
            storage.read_range("pixels/s/c/0", 5, 4)
        data, info = storage.get("pixels/s/c/0")
        assert data == bytes(range(200)) and info == storage.head("pixels/s/c/0")

    def test_a_rewrite_of_the_same_size_changes_the_version(self, storage: Storage) -> None:
        first = storage.write("runs/r", b"aaaa")
        second = storage.write("runs/r", b"bbbb")
        assert first.version != second.version and storage.read("runs/r") == b"bbbb"

    @pytest.mark.parametrize("bad", ["", "/abs", "../up", "a/../b", "a//b", "a/./b", "a\\b", "a/", "x\x00y"])
    def test_paths_outside_the_lake_are_refused(self, storage: Storage, bad: str) -> None:
        with pytest.raises(StoragePathError):
            storage.write(bad, b"x")
        with pytest.raises(ValueError):
            storage.head(bad)

    def test_create_is_put_if_absent(self, storage: Storage) -> None:
        assert storage.create("tables/t/_delta_log/0.json", b"first") is not None
        assert storage.create("tables/t/_delta_log/0.json", b"second") is None
        assert storage.read("tables/t/_delta_log/0.json") == b"first"

    def test_only_one_of_many_concurrent_creates_wins(self, storage: Storage) -> None:
        results = _parallel(8, lambda i: storage.create("commit/5.json", str(i).encode()))
        winners = [i for i, r in enumerate(results) if r is not None]
        assert len(winners) == 1
        assert storage.read("commit/5.json") == str(winners[0]).encode()

    def test_replace_is_compare_and_swap(self, storage: Storage) -> None:
        assert storage.replace("missing", b"x", "v") is None
        old = storage.write("state.json", b"1")
        new = storage.replace("state.json", b"2", old.version)
        assert new is not None and storage.read("state.json") == b"2"
        assert storage.replace("state.json", b"3", old.version) is None  # stale version
        assert storage.read("state.json") == b"2"

    def test_concurrent_increments_by_compare_and_swap_lose_nothing(self, storage: Storage) -> None:
        storage.write("counter", b"0")

        def increment(_: int) -> int:
            tries = 0
            for _ in range(5):
                while True:
                    tries += 1
                    data, info = storage.get("counter")
                    if storage.replace("counter", str(int(data) + 1).encode(), info.version) is not None:
                        break
            return tries

        _parallel(4, increment)
        assert storage.read("counter") == b"20"

    def test_lease_is_exclusive_until_released(self, storage: Storage) -> None:
        first = acquire(storage, ttl=30)
        with pytest.raises(LockTimeoutError):
            acquire(storage, ttl=30, timeout=0)
        first.check()
        first.release()
        second = acquire(storage, ttl=30, timeout=0)
        second.release()

    def test_an_expired_lease_is_taken_over_and_the_old_holder_commits_nothing(self, storage: Storage) -> None:
        clock = FakeClock()
        old = acquire(storage, ttl=10, clock=clock)
        waits: list[str] = []
        with pytest.raises(LockTimeoutError):
            acquire(storage, ttl=10, timeout=0, clock=clock, on_wait=waits.append)
        assert waits and "waiting" in waits[0]
        clock.now += 11  # the old holder stopped renewing (died, or paused)
        new = acquire(storage, ttl=10, timeout=0, clock=clock)
        with pytest.raises(LeaseLostError):
            old.check()
        with pytest.raises(LeaseLostError):
            old.renew()
        old.release()  # must not free the new holder's lease
        with pytest.raises(LockTimeoutError):
            acquire(storage, ttl=10, timeout=0, clock=clock)
        new.check()
        clock.now += 6  # past half its time: check renews it
        new.check()
        assert json.loads(storage.read("_lake_lease.json"))["expires"] == clock.now + 10
        new.release()

    def test_delta_tables_zarr_arrays_and_arrow_datasets_read_through_it(self, storage: Storage) -> None:
        import duckdb
        import numpy as np
        import pyarrow as pa
        import pyarrow.dataset as ds
        import zarr
        from deltalake import DeltaTable, write_deltalake

        uri, options = storage.uri("tables/t"), storage.storage_options()
        write_deltalake(uri, pa.table({"a": [1, 2]}), storage_options=options)
        write_deltalake(uri, pa.table({"a": [3]}), storage_options=options, mode="append")
        table = DeltaTable(uri, storage_options=options)
        assert sorted(table.to_pyarrow_table()["a"].to_pylist()) == [1, 2, 3] and table.version() == 1
        assert any(i.path.startswith("tables/t/_delta_log/") for i in storage.list("tables/t"))

        writable = storage.zarr_store("pixels/s1", read_only=False)
        array = zarr.create_array(writable, shape=(3, 4), chunks=(1, 4), dtype="i2")
        array[:] = np.arange(12, dtype="i2").reshape(3, 4)
        again = zarr.open_array(storage.zarr_store("pixels/s1"), mode="r")
        assert again[2, 3] == 11 and storage.exists("pixels/s1/zarr.json")

        fs, root = storage.arrow_filesystem()
        files = [f"{root}/{i.path}" for i in storage.list("tables/t") if i.path.endswith(".parquet")]
        dataset = ds.dataset(files, filesystem=fs, format="parquet")
        con = duckdb.connect(":memory:", config={"enable_external_access": False})
        con.register("t", dataset)  # DuckDB scans the Arrow dataset: no httpfs extension to download
        assert con.execute("SELECT sum(a) FROM t").fetchone() == (6,)
