"""Writes to a lake in object storage stage its tables and array metadata, not its pixel shards: an
ingest of new files copies no shard, a correction or ``forget`` that re-reads an array fetches that
array only, ``vacuum`` deletes an orphan array's shards it never fetched; each ends with the lake the
same command makes in a folder (moto's S3 server on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lake
from lake.cli import main
from lake.ingest import ingest
from lake.keys import read_key
from lake.maintenance.forget import forget
from lake.maintenance.replicate import replicate
from lake.maintenance.vacuum import vacuum
from lake.maintenance.verify import ProblemKind, verify
from lake.storage import open_storage
from lake.storage.lazy import StagingCounts, shard_array
from lake.storage.staging import STAGING_PREFIX, staged_lake
from lake.testing.synthetic import PatientSpec, make_cohort, write_study
from tests.faults.conftest import LAYOUT_COLUMNS, RUN_COLUMNS, new_lake
from tests.faults.test_forget import _shared_series_patients
from tests.test_updates import _corrected

pytest.importorskip("moto.server", reason="moto[server] is not installed")
pytest.importorskip("obstore", reason="obstore is not installed")

from lake.testing.s3 import S3Server, run_s3_server

BUCKET = "lake-s3-staging"
TABLES = ("instances", "studies", "series", "corrections", "rejects")


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with run_s3_server() as s3, s3.environment():
        s3.make_bucket(BUCKET)
        yield s3


@dataclass
class Twins:
    """The same lake in a folder and in S3, each with a key (and so a vault) of its own."""

    folder: Path
    folder_key: Path
    url: str
    key: Path
    src: Path


def _twins(tmp_path: Path, name: str) -> Twins:
    src = tmp_path / "src"
    make_cohort(src / "cohort", n_patients=2, studies_per_patient=1, n_images=3)
    _shared_series_patients(src / "shared")
    root, key = new_lake(tmp_path)
    ingest(root, [src], key_file=key, batch_size=3)
    url = f"s3://{BUCKET}/{name}"
    replicate(root, url)
    s3_key = tmp_path / "s3-keys" / "lake.key"
    s3_key.parent.mkdir()
    shutil.copy2(key, s3_key)
    return Twins(root, key, url, s3_key, src)


def _new_patient(folder: Path) -> Path:
    write_study(PatientSpec("NEWTON^ISAAC", "MRN770001", "19700101", "ACC7X"), folder, date(1987, 6, 5), n_images=3)
    return folder


def _frame_hashes(where: str) -> dict[str, str]:
    """SHA-256 of every stored instance's frames, by SOP Instance UID."""
    lk = lake.open(where)
    sops = lk.sql("SELECT SOPInstanceUID FROM instances WHERE pixel_array IS NOT NULL ORDER BY 1")
    return {uid: hashlib.sha256(np.asarray(lk.pixels(uid)).tobytes()).hexdigest() for uid in sops["SOPInstanceUID"]}


def _rows(where: str, table: str) -> list[dict[str, Any]]:
    """A table's rows without the per-run columns and the frames' places, sorted (as ``table_rows``)."""
    left_out = RUN_COLUMNS | LAYOUT_COLUMNS | {"corrected_at", "run_id"}
    rows = [
        {k: v for k, v in r.items() if k not in left_out}
        for r in lake.open(where).sql(f"SELECT * FROM {table}").to_dicts()
    ]
    return sorted(rows, key=lambda r: repr(sorted(r.items(), key=lambda kv: kv[0])))


def _same_lake(twins: Twins) -> None:
    """The S3 lake holds the folder lake's rows and frames, and verifies."""
    for table in TABLES:
        if (twins.folder / "tables" / table).is_dir():
            assert _rows(twins.url, table) == _rows(str(twins.folder), table), table
    assert _frame_hashes(twins.url) == _frame_hashes(str(twins.folder))
    report = verify(twins.url, record=False)
    assert report.ok, [str(p) for p in report.problems]
    arrays = sorted(lake.open(twins.url).pixel_store.keys())
    assert len(arrays) == len(list(lake.open(twins.folder).pixel_store.keys()))
    shards = {shard_array(i.path) for i in open_storage(twins.url).list("pixels")} - {None}
    assert shards == {f"pixels/{a}" for a in arrays}  # no shard is left of an array that is gone


def test_an_ingest_into_s3_stages_no_pixel_shard(server: S3Server, tmp_path: Path) -> None:
    twins = _twins(tmp_path, "ingest")
    new = _new_patient(tmp_path / "new")
    counts = StagingCounts()
    with staged_lake(twins.url, counts=counts) as folder:
        summary = ingest(folder, [new, twins.src], key_file=twins.key, batch_size=3)
        assert (summary.ingested, summary.duplicates) == (3, 10)
        staged_shards = [p for p in (folder / "pixels").rglob("*") if p.is_file() and "/c/" in p.as_posix()]
    assert counts.shards_left > 0 and counts.fetched_shards == counts.fetched_bytes == 0
    assert len(staged_shards) == 1  # the new patient's array only, written here
    ingest(twins.folder, [new, twins.src], key_file=twins.folder_key, batch_size=3)
    _same_lake(twins)


def test_a_correction_and_forget_fetch_the_arrays_they_read(server: S3Server, tmp_path: Path) -> None:
    twins = _twins(tmp_path, "corrected")
    lk = lake.open(twins.folder)
    arrays_before = len(list(lk.pixel_store.keys()))
    one = sorted((twins.src / "cohort").rglob("*.dcm"))[:1]  # one of three instances in one array
    fixed = _corrected(one, tmp_path / "fixed")[0].parent
    counts = StagingCounts()
    with staged_lake(twins.url, counts=counts) as folder:
        summary = ingest(folder, [fixed], key_file=twins.key)
        assert summary.updates["replaced"] == 1
    assert counts.fetched_shards == 1  # the array compacted: its frames read to copy those kept
    assert counts.shards_left == arrays_before  # one shard file an array
    ingest(twins.folder, [fixed], key_file=twins.folder_key)
    _same_lake(twins)

    patient = read_key(twins.key).pseudonym("", "MRN900002")  # shares an array with another: forget compacts it
    counts = StagingCounts()
    with staged_lake(twins.url, counts=counts) as folder:
        assert forget(folder, patient, key_file=twins.key).arrays_compacted == 1
    assert counts.fetched_shards == 1
    assert forget(twins.folder, patient, key_file=twins.folder_key).arrays_compacted == 1
    _same_lake(twins)


def test_vacuum_on_s3_deletes_an_orphan_array_it_never_staged(
    server: S3Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twins = _twins(tmp_path, "vacuum")
    storage = open_storage(twins.url)
    array = sorted(lake.open(twins.folder).pixel_store.keys())[0]
    orphan = f"{array.split('/')[0]}/orphan"
    for info in list(storage.list(f"pixels/{array}")):  # an array no row points to, as a crash leaves
        storage.write(f"pixels/{orphan}/{info.path[len(f'pixels/{array}/') :]}", storage.read(info.path))
    shutil.copytree(twins.folder / "pixels" / array, twins.folder / "pixels" / orphan)
    assert main(["vacuum", "--lake", twins.url]) == 0
    err = capsys.readouterr().err
    assert "fetched" not in err and "stay in the store until read" in err and STAGING_PREFIX not in err
    assert not list(storage.list(f"pixels/{orphan}"))
    assert vacuum(twins.folder).orphan_arrays == 1
    _same_lake(twins)


@pytest.mark.parametrize("point", ["staging.before_metadata", "staging.before_deletions"])
def test_a_correction_killed_while_publishing_is_completed_by_the_next_write(
    server: S3Server, tmp_path: Path, point: str
) -> None:
    twins = _twins(tmp_path, f"killed-{point.split('.')[-1]}")
    one = sorted((twins.src / "cohort").rglob("*.dcm"))[:1]
    fixed = _corrected(one, tmp_path / "fixed")[0].parent
    args = [sys.executable, "-m", "lake", "ingest", str(fixed), "--lake", twins.url, "--key-file", str(twins.key)]
    args += ["--workers", "1", "--no-progress"]
    env = {**os.environ, **server.env, "PYTHONWARNINGS": "ignore"}
    killed = subprocess.run(args, env={**env, "LAKE_CRASH_AT": point}, capture_output=True)
    assert killed.returncode == -9
    from lake.storage.lease import LEASE_PATH

    storage = open_storage(twins.url)
    storage.write(LEASE_PATH, b'{"expires": 0}')  # the dead writer's lease has expired (it stopped renewing)
    for left in Path(tempfile.gettempdir()).glob(f"{STAGING_PREFIX}*"):  # what the killed process left
        shutil.rmtree(left, ignore_errors=True)
    # consistent: the old snapshot or the new one, with at most an array no row points to (removed next)
    readable = verify(twins.url, record=False)
    assert {p.kind for p in readable.problems} <= {ProblemKind.ORPHAN_ARRAY}, [str(p) for p in readable.problems]
    assert readable.counts["instances_with_pixels"] == 10
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    ingest(twins.folder, [fixed], key_file=twins.folder_key)
    if point == "staging.before_deletions":
        # the killed run's deletions did not reach the store: the old version's files are still there,
        # so it can still be read, and the array it points to is retained, until lake vacuum removes both
        with staged_lake(twins.url) as folder:
            vacuum(folder, retention_hours=0)
    _same_lake(twins)


def test_a_reread_on_s3_fetches_the_series_it_reads(server: S3Server, tmp_path: Path) -> None:
    from lake.deid import pixels
    from lake.review import reread
    from tests.deid.test_ocr_sampling import _derived, _marker_finder
    from tests.review.test_reread import COUNT, LATE, SERIES, _write

    pixels.set_text_finder(_marker_finder)  # a block of white pixels is "text"
    try:
        key = tmp_path / "keys" / "lake.key"
        probe = tmp_path / "probe"  # which instances OCR leaves out of its sample (keyed): text goes there
        lake.init(probe, key_file=key)
        ingest(probe, _write(tmp_path / "clean", range(1, COUNT + 1), set()), key_file=key)
        unread = lake.open(probe).sql(
            "SELECT InstanceNumber FROM instances WHERE pixel_phi_reason = ? ORDER BY 1", [reread.UNREAD]
        )
        hidden = {int(n) for n in unread["InstanceNumber"].to_list()[::2]}
        assert hidden
        root = tmp_path / "lake"
        lake.init(root, key_file=key)
        ingest(root, _write(tmp_path / "first", range(1, COUNT + 1), hidden), key_file=key)
        url = f"s3://{BUCKET}/reread-ocr"
        replicate(root, url)
        s3_key = tmp_path / "s3-keys" / "lake.key"
        s3_key.parent.mkdir()
        shutil.copy2(key, s3_key)
        (tmp_path / "later").mkdir()
        late = tmp_path / "later" / "late.dcm"
        ds = _derived(SERIES, 2, True)  # a new instance of the series with text: the others are read again
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + LATE
        ds.save_as(late, enforce_file_format=True)
        counts = StagingCounts()
        with staged_lake(url, counts=counts) as folder:
            assert ingest(folder, [late], key_file=s3_key).ingested == 1
        assert counts.fetched_shards > 0  # the series' stored frames, read by OCR
        ingest(root, [late], key_file=key)
        _same_lake(Twins(root, key, url, s3_key, tmp_path / "first"))
        runs = "SELECT count(*) FROM runs WHERE operation = 'reread'"
        assert lake.open(url).sql(runs).item() == lake.open(root).sql(runs).item() == 1
        masked = "SELECT count(*) FROM instances WHERE pixel_reason = 'masked:ocr'"
        assert lake.open(url).sql(masked).item() > 0  # text found in frames read from the store
    finally:
        pixels.set_text_finder(pixels._UNSET)
