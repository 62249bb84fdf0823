"""``lake verify`` finds a flipped byte anywhere; replicas verify; restore repairs; vacuum removes orphans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lake
from lake.cli import main
from lake.ingest import ingest
from lake.maintenance.replicate import replicate
from lake.maintenance.vacuum import vacuum
from lake.maintenance.verify import ProblemKind, verify
from lake.pixels.store import PixelStore
from tests.faults.conftest import new_lake, table_rows


@pytest.fixture
def lake_root(tmp_path: Path, corpus: Path) -> Path:
    root, key = new_lake(tmp_path)
    ingest(root, [corpus], key_file=key, batch_size=4)
    return root


def _flip(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    pos = len(data) // 2 if offset is None else offset
    data[pos] ^= 0x01
    path.write_bytes(bytes(data))


def _a_shard(root: Path) -> Path:
    return sorted(p for p in (root / "pixels").rglob("*") if p.is_file() and "/c/" in p.as_posix())[0]


def _a_parquet(root: Path) -> Path:
    return sorted((root / "tables" / "instances").glob("*.parquet"))[0]


def test_a_clean_lake_verifies_and_the_run_is_audited(lake_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--lake", str(lake_root)]) == 0
    assert capsys.readouterr().out.startswith("ok")
    runs = lake.open(lake_root).sql("SELECT operation, outcome FROM runs ORDER BY started_at")
    assert runs.rows() == [("ingest", "partial"), ("verify", "ok")]


def test_a_flipped_byte_in_a_shard_is_named(lake_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard = _a_shard(lake_root)
    _flip(shard)
    assert main(["verify", "--lake", str(lake_root)]) == 1
    err = capsys.readouterr().err
    rel = shard.relative_to(lake_root).as_posix()
    assert f"pixel_file: {rel} (changed)" in err
    kinds = {p.kind for p in verify(lake_root, record=False).problems}
    assert ProblemKind.PIXEL_FILE in kinds
    assert lake.open(lake_root).sql("SELECT outcome FROM runs WHERE operation = 'verify'")[0, 0] == "failed"


def test_a_flipped_byte_in_a_parquet_file_is_named(lake_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parquet = _a_parquet(lake_root)
    _flip(parquet)
    assert main(["verify", "--lake", str(lake_root)]) == 1
    assert f"table_file: {parquet.relative_to(lake_root).as_posix()} (changed)" in capsys.readouterr().err


def test_rows_and_arrays_must_agree(lake_root: Path) -> None:
    lk = lake.open(lake_root)
    key = lk.sql("SELECT pixel_array FROM instances WHERE pixel_array IS NOT NULL LIMIT 1")[0, 0]
    store = PixelStore(lk.paths.pixels)
    frames = store.read(key, 0, 1)
    # an array no row points to (what a crash leaves) and frames that no longer match their row
    store.write("2.25.1/8x8x1-uint8", 0, np.zeros((1, 8, 8), np.uint8), {})
    store.write(key, 0, frames + 1, {})
    problems = {(p.kind, p.where) for p in verify(lake_root, record=False).problems}
    assert (ProblemKind.ORPHAN_ARRAY, "pixels/2.25.1/8x8x1-uint8") in problems
    assert (ProblemKind.FRAME_MISMATCH, f"pixels/{key}") in problems
    store.write(key, 0, frames, {})
    summary = vacuum(lake_root)
    assert summary.orphan_arrays == 1 and not (lk.paths.pixels / "2.25.1").exists()
    report = verify(lake_root, record=False)
    assert report.ok, [str(p) for p in report.problems]


def test_replicate_incrementally_and_restore_a_damaged_lake(lake_root: Path, tmp_path: Path, corpus: Path) -> None:
    replica = tmp_path / "replica"
    assert main(["replicate", "--lake", str(lake_root), "--to", str(replica)]) == 0
    first = verify(replica, record=False)
    assert first.ok, [str(p) for p in first.problems]
    assert table_rows(replica, "instances") == table_rows(lake_root, "instances")
    again = replicate(lake_root, replica)
    assert again.unchanged > again.copied  # only what changed since (the runs table's new commit)
    assert again.copied > 0
    _flip(_a_shard(lake_root))
    _flip(_a_parquet(lake_root))
    (lake_root / "lake.json").unlink()
    assert main(["restore", "--lake", str(lake_root), "--from", str(replica)]) == 0
    report = verify(lake_root, record=False)
    assert report.ok, [str(p) for p in report.problems]
    assert table_rows(lake_root, "instances") == table_rows(replica, "instances")
    operations = set(lake.open(lake_root).sql("SELECT operation FROM runs")["operation"].to_list())
    assert {"ingest", "replicate", "restore"} <= operations


def test_restore_refuses_a_damaged_replica(lake_root: Path, tmp_path: Path) -> None:
    replica = tmp_path / "replica"
    replicate(lake_root, replica)
    _flip(_a_shard(replica))
    assert main(["restore", "--lake", str(lake_root), "--from", str(replica)]) == 2


def test_a_replica_inside_the_lake_is_refused(lake_root: Path) -> None:
    assert main(["replicate", "--lake", str(lake_root), "--to", str(lake_root / "copy")]) == 2
