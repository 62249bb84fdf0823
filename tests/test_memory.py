"""The memory budget (``lake.memory``): parsing, its errors, and the settings DuckDB connections get."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lake
from lake import memory
from lake.catalog.query import open_views
from lake.catalog.sandbox import sandboxed_connection
from lake.cli import main
from lake.errors import LakeError, QueryRefusedError
from lake.memory import MemoryBudget, MemoryLimitError, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GB", 4 * 1000**3),
        ("512MB", 512 * 1000**2),
        ("512mb", 512 * 1000**2),
        ("1.5GiB", int(1.5 * 1024**3)),
        (" 2 TB ", 2 * 1000**4),
        ("200000000B", 200_000_000),
        ("131072KiB", 128 * 1024**2),
    ],
)
def test_sizes_parse_with_decimal_and_binary_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4", "is not a size"),
        ("4G", "is not a size"),
        ("lots", "is not a size"),
        ("-1GB", "is not a size"),
        ("", "is not a size"),
        ("1e3MB", "is not a size"),
        ("64MB", "too small"),
        ("0GB", "too small"),
    ],
)
def test_bad_sizes_are_refused_naming_the_value_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(MemoryLimitError, match=message) as caught:
        parse_size(text)
    assert repr(text) in str(caught.value)
    assert isinstance(caught.value, LakeError) and isinstance(caught.value, ValueError)


def test_the_default_is_a_quarter_of_the_machine_at_most_4gb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "total_memory", lambda: 24 * 1024**3)
    assert memory.default_limit() == 4 * 1024**3
    monkeypatch.setattr(memory, "total_memory", lambda: 8 * 1024**3)
    assert memory.default_limit() == 2 * 1024**3
    monkeypatch.delenv(memory.ENV, raising=False)
    assert memory.current().limit == 2 * 1024**3


def test_the_environment_sets_the_budget_and_the_option_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memory.ENV, "1GB")
    assert memory.current().limit == 1000**3
    with memory.use(MemoryBudget(3 * 1000**3)):
        assert memory.current().limit == 3 * 1000**3
    assert memory.current().limit == 1000**3
    monkeypatch.setenv(memory.ENV, "none")
    assert memory.current().limit is None
    monkeypatch.setenv(memory.ENV, "plenty")
    with pytest.raises(MemoryLimitError, match="LAKE_MEMORY_LIMIT"):
        memory.current()


def _settings(con: object) -> dict[str, object]:
    names = ("memory_limit", "threads", "temp_directory", "preserve_insertion_order")
    row = con.execute(  # type: ignore[attr-defined]
        "SELECT " + ", ".join(f"current_setting('{n}')" for n in names)
    ).fetchall()[0]
    return dict(zip(names, row, strict=True))


def test_connections_get_the_budget_and_a_spill_folder_removed_after() -> None:
    with memory.use(MemoryBudget(1000**3)), memory.connect("test", ordered=False) as con:
        settings = _settings(con)
        spill = str(settings["temp_directory"])
        assert os.path.isdir(spill) and os.path.basename(spill).startswith("lake-test-")
        assert oct(os.stat(spill).st_mode & 0o777) == "0o700"
    # DuckDB shows its limit rounded in its own units: 60% of 1 GB is 572 MiB
    assert settings["memory_limit"] == "572.2 MiB"
    assert settings["threads"] == min(os.cpu_count() or 1, 2)
    assert settings["preserve_insertion_order"] is False
    assert not os.path.exists(spill)


def test_unbounded_leaves_duckdb_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memory.ENV, "none")
    with memory.connect("test") as con:
        settings = _settings(con)
    assert settings["threads"] == os.cpu_count()
    assert settings["preserve_insertion_order"] is True


def test_the_views_and_the_sql_sandbox_get_the_budget(tmp_path: Path) -> None:
    lk = lake.init(tmp_path / "lk")
    with memory.use(MemoryBudget(500 * 1000**2)):
        con = open_views(lk.paths)[0]
        sandboxed = sandboxed_connection(lk.paths)
    assert _settings(con)["memory_limit"] == "286.1 MiB"
    assert _settings(con)["threads"] == 1
    assert sandboxed.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == "286.1 MiB"
    with pytest.raises(QueryRefusedError):  # a query cannot raise its own limit
        sandboxed.execute("SET memory_limit = '20GB'")
    con.close()


def test_the_cli_refuses_a_bad_limit_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lk = tmp_path / "lk"
    lake.init(lk)
    with pytest.raises(SystemExit) as exit_:
        main(["optimize", "--lake", str(lk), "--memory-limit", "4G"])
    assert exit_.value.code == 2
    assert "'4G' is not a size" in capsys.readouterr().err
    monkeypatch.setenv(memory.ENV, "half")
    assert main(["verify", "--lake", str(lk), "--no-progress"]) == 2
    assert "LAKE_MEMORY_LIMIT" in capsys.readouterr().err
    monkeypatch.delenv(memory.ENV)
    assert main(["verify", "--lake", str(lk), "--no-progress", "--memory-limit", "256MB"]) == 0


def test_key_sets_beyond_their_share_of_the_budget_go_to_disk_and_answer_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import duckdb
    import numpy as np
    import pyarrow as pa

    from lake.ingest import keyset
    from lake.ingest.keyset import KeySet

    rng = np.random.default_rng(5)
    uids = [f"2.25.{int(v)}" for v in rng.integers(1, 2**62, 30_000)]
    values = [*uids, *uids[:500], "1.2.840.10008.1", None]  # repeats, another shape, a NULL
    con = duckdb.connect()
    con.register("t", pa.table({"v": pa.array(values, pa.string())}))
    in_memory = KeySet.load(con, "t", "v", "uid")
    monkeypatch.setattr(keyset, "FETCH_KEYS", 4096)  # many chunks: repeats across their edges
    with memory.use(MemoryBudget(memory.MINIMUM)):
        monkeypatch.setattr(keyset, "MEMORY_SHARE", 0.0)
        on_disk = KeySet.load(con, "t", "v", "uid")
    assert isinstance(on_disk._sorted, np.memmap) and not isinstance(in_memory._sorted, np.memmap)
    assert len(on_disk) == len(in_memory) == len(set(uids)) + 1
    probes = [*uids[::7], "1.2.840.10008.1", "2.25.5", "2.25.0", "1.2.3"]
    assert [p in on_disk for p in probes] == [p in in_memory for p in probes]
    assert all(u in on_disk for u in uids) and "2.25.5" not in on_disk
    on_disk.add("2.25.5")
    assert "2.25.5" in on_disk
