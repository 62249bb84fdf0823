"""A lake in object storage: built in a folder, replicated to moto's S3 server on 127.0.0.1 with
``lake replicate --to s3://...``, then read from there by the library and the CLI; every answer must
equal the folder's."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import lake
from lake.cli import main
from lake.errors import FolderLakeOnlyError, QueryRefusedError
from lake.ingest import ingest
from lake.maintenance.replicate import replicate
from lake.storage.staging import STAGING_PREFIX
from lake.testing.longitudinal import standard_plans, write_plans

pytest.importorskip("moto.server", reason="moto[server] is not installed")
pytest.importorskip("obstore", reason="obstore is not installed")
s3fs = pytest.importorskip("s3fs", reason="s3fs is not installed")

from lake.testing.s3 import S3Server, run_s3_server  # noqa: E402

BUCKET = "lake-s3-lakes"

QUERIES = (
    "SELECT count(*) AS n FROM instances",
    "SELECT * FROM studies ORDER BY ALL",
    "SELECT * FROM series ORDER BY ALL",
    "SELECT * FROM timeline ORDER BY ALL",
    "SELECT * FROM priors ORDER BY ALL",
    "SELECT SOPInstanceUID, sha256 FROM bulk ORDER BY ALL",
    "SELECT PatientID, count(*) AS n FROM instances GROUP BY ALL ORDER BY ALL",
    "SELECT run_id, operation FROM runs WHERE operation = 'ingest' ORDER BY ALL",  # replicate's row comes after
)


@dataclass
class Lakes:
    folder: Path
    url: str
    key_file: Path
    server: S3Server


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lakes]:
    base = tmp_path_factory.mktemp("s3-lake")
    saved = os.environ.get("LAKE_HOME")
    os.environ["LAKE_HOME"] = str(base / "home")
    try:
        write_plans(base / "src", standard_plans())
        key_file = base / "keys" / "lake.key"
        lake.init(base / "lake", key_file=key_file)
        ingest(base / "lake", [base / "src"], key_file=key_file, workers=1, batch_size=10)  # several files a table
        with run_s3_server() as server, server.environment():
            server.make_bucket(BUCKET)
            s3fs.S3FileSystem.clear_instance_cache()
            url = f"s3://{BUCKET}/lakes/one"
            replicate(base / "lake", url)
            yield Lakes(base / "lake", url, key_file, server)
            s3fs.S3FileSystem.clear_instance_cache()
    finally:
        if saved is None:
            os.environ.pop("LAKE_HOME", None)
        else:
            os.environ["LAKE_HOME"] = saved


def test_queries_on_s3_equal_the_folder(lakes: Lakes) -> None:
    folder, remote = lake.open(lakes.folder), lake.open(lakes.url)
    assert repr(remote) == f"Lake({lakes.url!r})" and remote.local_root is None
    for query in QUERIES:
        expected, got = folder.sql(query), remote.sql(query)
        assert len(expected) > 0 or "bulk" in query, query  # the synthetic headers have no bulk values
        assert got.equals(expected), query
    for table in ("instances", "studies"):
        assert (
            remote.table(table)
            .collect()
            .sort("StudyInstanceUID")
            .equals(folder.table(table).collect().sort("StudyInstanceUID"))
        )
    counts = {k: v for k, v in remote.info().items() if not k.startswith("bytes")}
    assert counts == {k: v for k, v in folder.info().items() if not k.startswith("bytes")}
    assert remote.info()["bytes_pixels"] == folder.info()["bytes_pixels"] > 0
    sop = folder.sql("SELECT SOPInstanceUID FROM instances ORDER BY 1 LIMIT 1").item()
    assert remote.header(sop, bulk=True) == folder.header(sop, bulk=True)
    with remote.snapshot() as snap, folder.snapshot() as local_snap:
        runs = "runs"  # the folder's replicate row was committed after the copy
        assert {k: v for k, v in snap.versions.items() if k != runs} == {
            k: v for k, v in local_snap.versions.items() if k != runs
        }
        assert snap.sql(QUERIES[1]).equals(local_snap.sql(QUERIES[1]))


def test_the_sandbox_holds_on_s3(lakes: Lakes) -> None:
    remote = lake.open(lakes.url)
    refused = (
        "COPY instances TO '/tmp/lake-s3-out.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_parquet('{lakes.url}/tables/instances/*.parquet')",
        "SELECT * FROM read_text('" + str(lakes.key_file) + "')",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SELECT 1; DROP VIEW instances",
    )
    for query in refused:
        with pytest.raises(QueryRefusedError):
            remote.sql(query)
    assert not Path("/tmp/lake-s3-out.csv").exists()
    assert remote.sql("SELECT count(*) FROM instances").item() > 0  # the views are intact


def test_duckdb_loads_no_extension_for_an_s3_lake(lakes: Lakes) -> None:
    from lake.catalog.query import connect
    from lake.config import LakePaths

    loaded = "SELECT extension_name FROM duckdb_extensions() WHERE loaded ORDER BY 1"
    folder, remote = connect(LakePaths(lakes.folder)), connect(LakePaths(lakes.url))
    remote.execute("SELECT * FROM studies").fetchall()
    assert remote.execute(loaded).fetchall() == folder.execute(loaded).fetchall()  # the built-in ones only
    assert ("httpfs",) not in remote.execute(loaded).fetchall()
    assert remote.execute("SELECT current_setting('autoinstall_known_extensions')").fetchone() == (False,)


def test_cli_sql_info_and_cohort_on_s3(lakes: Lakes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = {}
    for name, where in (("folder", str(lakes.folder)), ("s3", lakes.url)):
        assert main(["sql", "--lake", where, "--format", "csv", QUERIES[3]]) == 0
        sql_out = capsys.readouterr().out
        out_file = tmp_path / f"{name}.parquet"
        assert main(["sql", "--lake", where, "--out", str(out_file), QUERIES[3]]) == 0
        capsys.readouterr()
        assert main(["info", "--lake", where]) == 0
        info_out = [line for line in capsys.readouterr().out.splitlines() if "bytes" not in line]
        manifest = tmp_path / f"{name}.json"
        query = "SELECT PatientID, StudyInstanceUID FROM studies WHERE list_contains(modalities, 'CT') ORDER BY ALL"
        assert main(["cohort", "save", "--lake", where, "--sql", query, "--out", str(manifest)]) == 0
        capsys.readouterr()
        args = ["cohort", "show", str(manifest), "--lake", where, "--key-file", str(lakes.key_file)]
        assert main([*args, "--format", "csv"]) == 0
        shown = capsys.readouterr().out
        saved = json.loads(manifest.read_text())
        outputs[name] = (sql_out, info_out, shown, saved["content_hash"], saved["versions"])
        assert saved["lake"] == where
    assert outputs["s3"] == outputs["folder"]
    assert outputs["s3"][2].count("\n") > 1
    assert (tmp_path / "s3.parquet").read_bytes() == (tmp_path / "folder.parquet").read_bytes()


def test_pixels_and_nifti_from_s3_equal_the_folder(lakes: Lakes, tmp_path: Path) -> None:
    import nibabel as nib

    folder, remote = lake.open(lakes.folder), lake.open(lakes.url)
    series = folder.sql("SELECT DISTINCT SeriesInstanceUID FROM instances WHERE pixel_array IS NOT NULL ORDER BY 1")
    for uid in series["SeriesInstanceUID"]:
        assert np.array_equal(remote.series_array(uid).compute(), folder.series_array(uid).compute())
    uid = series["SeriesInstanceUID"][0]
    local_volume, remote_volume = folder.volume(uid), remote.volume(uid)
    assert np.array_equal(remote_volume.array, local_volume.array)
    assert np.array_equal(remote_volume.affine, local_volume.affine)
    sop = folder.sql("SELECT SOPInstanceUID FROM instances WHERE pixel_array IS NOT NULL LIMIT 1").item()
    assert np.array_equal(remote.pixels(sop), folder.pixels(sop))
    assert np.array_equal(remote.pixels(sop, frame=0), folder.pixels(sop, frame=0))
    with remote.snapshot() as snap:
        assert np.array_equal(snap.pixels(sop, frame=0), folder.pixels(sop, frame=0))
        assert np.array_equal(snap.series_array(uid).compute(), folder.series_array(uid).compute())
    assert remote.thumbnail(uid) == folder.thumbnail(uid)

    # in a fixed order: two series of one patient with the same number are named _run-1, _run-2 in query order
    query = "SELECT DISTINCT SeriesInstanceUID FROM instances WHERE pixel_array IS NOT NULL ORDER BY 1"
    for name, where in (("folder", str(lakes.folder)), ("s3", lakes.url)):
        args = ["export", "nifti", "--lake", where, "--sql", query, "--out", str(tmp_path / name)]
        assert main([*args, "--key-file", str(lakes.key_file)]) == 0
    written = sorted(p.relative_to(tmp_path / "folder") for p in (tmp_path / "folder").rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(tmp_path / "s3") for p in (tmp_path / "s3").rglob("*") if p.is_file())
    assert any(p.name.endswith(".nii.gz") for p in written)
    for rel in written:
        a, b = tmp_path / "folder" / rel, tmp_path / "s3" / rel
        if rel.name.endswith(".nii.gz"):
            one, two = nib.load(a), nib.load(b)  # type: ignore[attr-defined]
            assert np.array_equal(np.asarray(one.dataobj), np.asarray(two.dataobj))
            assert np.array_equal(one.affine, two.affine)
        else:
            assert a.read_bytes() == b.read_bytes(), rel


@pytest.mark.parametrize(
    "command",
    [
        ["demo", "--lake", "URL"],
        ["listen", "--lake", "URL", "--port", "1"],
    ],
)
def test_commands_that_need_a_folder_refuse_an_s3_lake(
    lakes: Lakes, tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{BUCKET}/lakes/refused"
    args = [url if a == "URL" else str(tmp_path / "src") if a == "SRC" else a for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "needs a lake in a folder" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    assert not lake.storage.open_storage(url).exists("lake.json")
    with pytest.raises(FolderLakeOnlyError):
        lake.open(lakes.url).optimize()


def test_a_missing_s3_lake_is_a_clear_error(lakes: Lakes, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--lake", f"s3://{BUCKET}/nothing/here"]) == 2
    err = capsys.readouterr().err
    assert "no lake at s3://" in err and "lake init s3://" in err
    assert not Path("s3:").exists()  # a URL is never taken for a folder


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != ".lock"
    }


def test_verify_and_replicate_s3_to_a_folder(lakes: Lakes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lake.maintenance.verify import verify

    assert main(["verify", "--lake", lakes.url, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok (") and "frames_checked" in out and "table_files" in out
    back = tmp_path / "back"
    assert main(["replicate", "--lake", lakes.url, "--to", str(back), "--no-progress"]) == 0
    report = verify(back, record=False)
    assert report.ok, [str(p) for p in report.problems]
    first, copied = _files(lakes.folder), _files(back)
    runs = "tables/runs/"  # the folder's replicate row was committed after the copy to S3
    assert {k: v for k, v in copied.items() if not k.startswith(runs)} == {
        k: v for k, v in first.items() if not k.startswith(runs)
    }
    assert lake.open(back).sql(QUERIES[3]).equals(lake.open(lakes.folder).sql(QUERIES[3]))
    again = replicate(lakes.url, back)
    assert again.copied == 0 and again.deleted == 0 and again.unchanged == len(copied)


def test_verify_on_s3_finds_a_flipped_byte(lakes: Lakes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lake.maintenance.verify import ProblemKind, verify
    from lake.storage import open_storage

    url = f"s3://{BUCKET}/lakes/damaged"
    replicate(lakes.folder, url)
    storage = open_storage(url)
    shard = next(i.path for i in storage.list("pixels") if "/c/" in i.path)
    table_file = next(i.path for i in storage.list("tables/instances") if i.path.endswith(".parquet"))
    for path in (shard, table_file):
        data = bytearray(storage.read(path))
        data[len(data) // 2] ^= 0xFF
        storage.write(path, bytes(data))
    report = verify(url)
    found = {(p.kind, p.where) for p in report.problems}
    assert (ProblemKind.PIXEL_FILE, shard) in found and (ProblemKind.TABLE_FILE, table_file) in found
    assert main(["verify", "--lake", url, "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert f"pixel_file: {shard} (changed)" in captured.err and captured.out.startswith("FAILED")


def test_ingest_into_s3_equals_the_folder_and_forget_removes_the_patient(
    lakes: Lakes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lake.keys import read_key
    from lake.maintenance.verify import verify
    from lake.storage import open_storage

    key_file = tmp_path / "keys" / "lake.key"  # the folder lake's key, with a vault of its own
    key_file.parent.mkdir()
    shutil.copy2(lakes.key_file, key_file)
    url = f"s3://{BUCKET}/lakes/ingested"
    src = lakes.folder.parent / "src"
    args = ["ingest", str(src), "--lake", url, "--key-file", str(key_file), "--workers", "1", "--no-progress"]
    assert main([*args, "--batch-size", "10"]) == 0
    captured = capsys.readouterr()
    assert "ingested 36" in captured.out
    assert f"created lake {url};" in captured.err and STAGING_PREFIX not in captured.out + captured.err
    folder, remote = lake.open(lakes.folder), lake.open(url)
    for query in QUERIES[:-1]:
        assert remote.sql(query).equals(folder.sql(query)), query
    pixels = "SELECT SOPInstanceUID, pixel_sha256, frame_count FROM instances ORDER BY ALL"
    assert remote.sql(pixels).equals(folder.sql(pixels))
    assert verify(url).ok
    assert not list(Path(tempfile.gettempdir()).glob(f"{STAGING_PREFIX}*"))  # the staged copy is removed

    assert main(args) == 0  # again: every file a duplicate, nothing new published but the runs row
    assert "ingested 0, duplicates 36" in capsys.readouterr().out
    assert remote.sql("SELECT count(*) FROM instances").item() == 36

    patient = read_key(key_file).pseudonym("", standard_plans()[1].spec.patient_id)
    assert remote.sql("SELECT count(*) FROM instances WHERE PatientID = ?", [patient]).item() > 0
    assert main(["forget", "--lake", url, "--patient", patient, "--key-file", str(key_file)]) == 0
    assert remote.sql("SELECT count(*) FROM instances WHERE PatientID = ?", [patient]).item() == 0
    assert remote.sql("SELECT count(DISTINCT PatientID) FROM instances").item() == 8
    report = verify(url)
    assert report.ok, [str(p) for p in report.problems]
    storage = open_storage(url)
    assert all(patient.encode() not in storage.read(info.path) for info in storage.list())


def test_a_staged_write_waits_for_the_lease_and_never_overwrites_a_commit(lakes: Lakes) -> None:
    from lake.errors import LockTimeoutError, StorageConflictError
    from lake.ingest import ingest as ingest_files
    from lake.storage import hold_lease, open_storage
    from lake.storage.staging import staged_lake

    url = f"s3://{BUCKET}/lakes/contended"
    replicate(lakes.folder, url)
    storage = open_storage(url)
    before = {i.path: i.version for i in storage.list()}
    held = hold_lease(storage, renew_every=0)  # another writer holds the lease
    with held, pytest.raises(LockTimeoutError), staged_lake(url, lease_timeout=0):
        pytest.fail("the block ran without the lease")
    log = "tables/runs/_delta_log"  # the ingest below commits its runs row there
    newest = max(i.path for i in storage.list(log) if i.path.endswith(".json"))
    theirs = f"{log}/{int(newest.rsplit('/', 1)[-1].split('.')[0]) + 1:020d}.json"
    with pytest.raises(StorageConflictError), staged_lake(url) as folder:
        summary = ingest_files(folder, [lakes.folder.parent / "src"], key_file=lakes.key_file, workers=1)
        assert summary.duplicates == 36
        storage.create(theirs, b'{"commitInfo":{}}\n')  # a writer that ignored the lease committed first
    assert storage.read(theirs) == b'{"commitInfo":{}}\n'  # theirs is kept, and nothing of ours was published
    lease = "_lake_lease.json"
    assert {i.path: i.version for i in storage.list() if i.path not in (theirs, lease)} == {
        p: v for p, v in before.items() if p != lease
    }


def test_an_ingest_killed_while_publishing_to_s3_is_completed_by_the_same_command(lakes: Lakes, tmp_path: Path) -> None:
    import subprocess
    import sys

    from lake.maintenance.verify import verify
    from lake.storage import open_storage
    from lake.storage.lease import LEASE_PATH

    key_file = tmp_path / "keys" / "lake.key"
    key_file.parent.mkdir()
    shutil.copy2(lakes.key_file, key_file)
    url = f"s3://{BUCKET}/lakes/killed"
    src = lakes.folder.parent / "src"
    args = [sys.executable, "-m", "lake", "ingest", str(src), "--lake", url, "--key-file", str(key_file)]
    args += ["--workers", "1", "--no-progress", "--batch-size", "10"]
    env = {**os.environ, **lakes.server.env, "PYTHONWARNINGS": "ignore"}
    killed = subprocess.run(args, env={**env, "LAKE_CRASH_AT": "staging.before_metadata"}, capture_output=True)
    assert killed.returncode == -9
    storage = open_storage(url)
    assert not storage.exists("lake.json") and any(i.path.endswith(".parquet") for i in storage.list())
    storage.write(LEASE_PATH, b'{"expires": 0}')  # the dead writer's lease has expired (it stopped renewing)
    for folder in Path(tempfile.gettempdir()).glob(f"{STAGING_PREFIX}*"):  # what the killed process left
        shutil.rmtree(folder, ignore_errors=True)
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    assert "ingested 36" in done.stdout
    report = verify(url)
    assert report.ok, [str(p) for p in report.problems]
    pixels = "SELECT SOPInstanceUID, pixel_sha256, frame_count FROM instances ORDER BY ALL"
    assert lake.open(url).sql(pixels).equals(lake.open(lakes.folder).sql(pixels))
    assert lake.open(url).sql(QUERIES[3]).equals(lake.open(lakes.folder).sql(QUERIES[3]))
