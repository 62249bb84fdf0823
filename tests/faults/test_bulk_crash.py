"""Bulk rows under crashes and damage: ``kill -9`` between the ``bulk`` commit and the ``instances``
commit of a batch leaves no orphan bulk row visible to readers, the same command again gives the
lake of an uninterrupted run (no value twice), and ``lake verify`` re-hashes every bulk value
against its ``bulk:<sha256>`` URI: a flipped byte, a lost row and an orphan are each reported."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pydicom
import pytest

import lake
from lake import crashpoints
from lake.catalog.tables import append, delete_where, distinct_values, snapshot_files
from lake.fixity import record_table_fixity
from lake.ingest import ingest
from lake.maintenance.vacuum import vacuum
from lake.maintenance.verify import ProblemKind, verify
from tests.faults.conftest import (
    BATCH,
    Reference,
    assert_complete,
    ingest_args,
    make_corpus,
    new_lake,
    running,
    table_rows,
    twin_lake,
)

ICC_BYTES = 2000  # over the 768 bytes inlined in header_json: a bulk value per instance


def _icc_profile(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return b"acspAPPL" + rng.integers(0, 256, ICC_BYTES - 8, dtype=np.uint8).tobytes()


def _bulk_corpus(root: Path) -> None:
    """The fault tests' corpus (12 instances, 2 rejects), each instance with its own ICC profile."""
    make_corpus(root)
    for seed, path in enumerate(sorted(root.rglob("*_0*.dcm"))):
        ds = pydicom.dcmread(path)
        ds.ICCProfile = _icc_profile(seed)
        ds.save_as(path)


@pytest.fixture(scope="module")
def bulk_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    base = tmp_path_factory.mktemp("bulk-reference")
    corpus = base / "src"
    _bulk_corpus(corpus)
    root, key = new_lake(base, "reference")
    summary = ingest(root, [corpus], key_file=key, batch_size=BATCH)
    assert summary.ingested == 12 and summary.rejected == 2
    rows = {t: table_rows(root, t) for t in ("instances", "rejects", "bulk")}
    assert len(rows["bulk"]) == 12 and {r["keyword_path"] for r in rows["bulk"]} == {"ICCProfile"}
    return Reference(corpus, root, key, rows)


def _physical_bulk_uids(root: Path) -> list[str]:
    """SOPInstanceUIDs of every bulk row in the table's files (what a reader must not be shown)."""
    files = snapshot_files(root / "tables" / "bulk")
    import pyarrow.parquet as pq

    return sorted(u for f in files for u in pq.read_table(f, columns=["SOPInstanceUID"]).column(0).to_pylist())


def _crash_after_bulk(tmp_path: Path, ref: Reference) -> tuple[Path, Path]:
    root, key = twin_lake(tmp_path, "crashed", ref)
    with running(*ingest_args(ref.corpus, root, key), env={crashpoints.CRASH_ENV: "ingest.after_bulk:2"}) as proc:
        assert proc.wait(timeout=120) == -signal.SIGKILL, "the ingest ended without reaching ingest.after_bulk:2"
    return root, key


def test_kill_between_bulk_and_instances_leaves_no_visible_orphan_and_rerun_equals_uninterrupted(
    tmp_path: Path, bulk_reference: Reference
) -> None:
    root, key = _crash_after_bulk(tmp_path, bulk_reference)
    committed = {r["SOPInstanceUID"] for r in table_rows(root, "instances")}
    assert len(committed) == BATCH  # batch 1 committed; batch 2's bulk rows committed, its instances not
    physical = _physical_bulk_uids(root)
    assert len(physical) == 2 * BATCH and len(set(physical) - committed) == BATCH  # the orphans are on disk
    # ... and no reader sees them: the view, SQL, a snapshot, the header lookup
    lk = lake.open(root, key_file=key)
    seen = lk.sql("SELECT SOPInstanceUID FROM bulk")["SOPInstanceUID"].to_list()
    assert sorted(seen) == sorted(committed)
    with lk.snapshot() as snap:
        assert snap.sql("SELECT count(*) AS n FROM bulk")[0, 0] == BATCH
    assert all(r in bulk_reference.rows["bulk"] for r in table_rows(root, "bulk"))
    report = verify(root, record=False)
    assert sorted(p.where for p in report.problems if p.kind is ProblemKind.ORPHAN_BULK) == sorted(
        f"tables/bulk/{u}" for u in set(physical) - committed
    )
    # the same command again: the lake of an uninterrupted run, every value once
    ingest(root, [bulk_reference.corpus], key_file=key, batch_size=BATCH)
    assert_complete(root, bulk_reference)
    assert len(_physical_bulk_uids(root)) == 12 == len(set(_physical_bulk_uids(root)))
    lk = lake.open(root, key_file=key)
    for uid in committed:
        assert lk.header(uid, bulk=True)["00282000"]["InlineBinary"]


def test_vacuum_removes_orphan_bulk_rows(tmp_path: Path, bulk_reference: Reference) -> None:
    root, _key = _crash_after_bulk(tmp_path, bulk_reference)
    summary = vacuum(root)
    assert summary.orphan_bulk_rows == BATCH
    assert len(_physical_bulk_uids(root)) == BATCH
    assert verify(root, record=False).ok


def _copy_of_reference(tmp_path: Path, ref: Reference) -> Path:
    root, key = twin_lake(tmp_path, "copy", ref)
    ingest(root, [ref.corpus], key_file=key, batch_size=BATCH)
    assert verify(root, record=False).ok
    return root


def test_verify_rehashes_bulk_values_and_reports_a_flipped_byte(tmp_path: Path, bulk_reference: Reference) -> None:
    root = _copy_of_reference(tmp_path, bulk_reference)
    report = verify(root, record=False)
    assert report.counts["bulk_values"] == 12 and report.counts["bulk_references"] == 12
    # one value's byte flipped before it was written (the file checksums are then of the wrong bytes)
    bulk_dir = root / "tables" / "bulk"
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(f) for f in snapshot_files(bulk_dir)]).combine_chunks()
    victim = table.slice(0, 1).to_pylist()[0]
    delete_where(bulk_dir, f"SOPInstanceUID = '{victim['SOPInstanceUID']}'")
    flipped = bytearray(victim["value"])
    flipped[len(flipped) // 2] ^= 0x01
    append(bulk_dir, pa.Table.from_pylist([{**victim, "value": bytes(flipped)}], schema=table.schema))
    record_table_fixity(lake.open(root).paths)
    report = verify(root, record=False)
    assert [(p.kind, p.where) for p in report.problems] == [
        (ProblemKind.BULK_MISMATCH, f"tables/bulk/{victim['SOPInstanceUID']}/{victim['tag_path']}")
    ]
    # nothing of the value in the report
    assert victim["value"][:16].hex() not in str(report.to_dict()) + " ".join(str(p) for p in report.problems)


def test_verify_reports_a_lost_bulk_row_and_a_flipped_byte_in_the_file(
    tmp_path: Path, bulk_reference: Reference
) -> None:
    root = _copy_of_reference(tmp_path, bulk_reference)
    bulk_dir = root / "tables" / "bulk"
    victim = sorted(distinct_values(snapshot_files(bulk_dir), "SOPInstanceUID"))[0]
    delete_where(bulk_dir, f"SOPInstanceUID = '{victim}'")
    record_table_fixity(lake.open(root).paths)
    report = verify(root, record=False)
    assert [(p.kind, p.where) for p in report.problems] == [(ProblemKind.MISSING_BULK, f"tables/instances/{victim}")]
    # a byte flipped on disk: the file's checksum says so (and the value, if it still decodes)
    path = Path(snapshot_files(bulk_dir)[0])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    kinds = {p.kind for p in verify(root, record=False).problems}
    assert ProblemKind.TABLE_FILE in kinds
