"""``init``, ``optimize``, ``review``, ``restore``, ``audit-phi`` and ``export teaching`` on a lake in
object storage (moto's S3 server on 127.0.0.1): each gives what it gives on the same lake in a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import lake
from lake.cli import main
from lake.config import vault_dir
from lake.ingest import ingest
from lake.maintenance.replicate import replicate
from lake.maintenance.verify import verify
from lake.review import list_queue
from lake.storage import open_storage
from lake.storage.staging import STAGING_PREFIX
from lake.testing.synthetic import make_cohort
from tests.storage.test_s3_staging import BUCKET, Twins, _frame_hashes, _rows, _same_lake, _twins, server
from tests.test_review import _quarantine_files

pytest.importorskip("moto.server", reason="moto[server] is not installed")

__all__ = ["server"]  # the module's S3 server (a fixture)


def test_init_on_s3_then_ingest(server: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"s3://{BUCKET}/inited"
    key = tmp_path / "keys" / "lake.key"
    assert main(["init", url, "--key-file", str(key), "--burned-in-policy", "keep-flagged"]) == 0
    captured = capsys.readouterr()
    assert f"created lake {url}" in captured.out and STAGING_PREFIX not in captured.out + captured.err
    assert open_storage(url).exists("lake.json") and key.is_file()
    assert not any(i.path.endswith(".key") for i in open_storage(url).list())  # the key stays outside
    assert main(["init", url, "--key-file", str(key)]) == 2  # a lake is there already
    assert "already" in capsys.readouterr().err
    make_cohort(tmp_path / "src", n_patients=2, studies_per_patient=1, n_images=2)
    assert main(["ingest", str(tmp_path / "src"), "--lake", url, "--key-file", str(key), "--no-progress"]) == 0
    assert lake.open(url).sql("SELECT count(*) FROM instances WHERE pixel_array IS NOT NULL").item() == 4
    assert verify(url, record=False).ok


def test_optimize_on_s3_equals_the_folder(server: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    twins = _twins(tmp_path, "optimized")
    assert main(["optimize", "--lake", twins.url, "--no-progress"]) == 0
    captured = capsys.readouterr()
    # the small arrays of a series are merged: their shards are read, the rest are not staged
    assert "published to" in captured.err and "pixel arrays: 2 small arrays merged into 1" in captured.out
    assert main(["optimize", "--lake", str(twins.folder), "--no-progress"]) == 0
    _same_lake(twins)
    assert main(["optimize", "--lake", twins.url, "--no-progress", "--force"]) == 0
    captured = capsys.readouterr()  # nothing small is left: tables only, no shard read
    assert "no small arrays to merge" in captured.out and "fetched" not in captured.err
    assert any(i.path.startswith("tables/header_index/") for i in open_storage(twins.url).list())
    sop = lake.open(twins.folder).sql("SELECT SOPInstanceUID FROM instances ORDER BY 1 LIMIT 1").item()
    assert lake.open(twins.url).header(sop) == lake.open(twins.folder).header(sop)


def test_review_on_s3_equals_the_folder(server: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    make_cohort(src, n_patients=2, studies_per_patient=1, n_images=3)
    _quarantine_files(sorted(sorted(p for p in src.iterdir() if p.is_dir())[0].rglob("*.dcm")))
    root, key = tmp_path / "lake", tmp_path / "keys" / "lake.key"
    lake.init(root, key_file=key)  # the default policy: the burned-in instances are quarantined
    ingest(root, [src], key_file=key)
    url = f"s3://{BUCKET}/reviewed"
    replicate(root, url)
    s3_key = tmp_path / "s3-keys" / "lake.key"  # the same key with a copy of its vault (the held pixels)
    s3_key.parent.mkdir()
    shutil.copy2(key, s3_key)
    shutil.copytree(vault_dir(key), vault_dir(s3_key))
    uids = [item.sop_uid for item in list_queue(root, key)]
    assert len(uids) == 3
    for where, k in ((url, s3_key), (str(root), key)):
        base = ["--lake", where, "--key-file", str(k)]
        assert main(["review", "list", *base]) == 0
        assert "3 instances under review" in capsys.readouterr().out
        assert main(["review", "mask", uids[0], *base, "--box", "0", "0", "4", "4"]) == 0
        assert main(["review", "release", uids[1], *base, "--reviewer", "someone"]) == 0
        assert main(["review", "reject", uids[2], *base]) == 0
        assert main(["review", "list", *base]) == 0
        assert "0 instances under review" in capsys.readouterr().out
    _same_lake(Twins(root, key, url, s3_key, src))
    assert len(_frame_hashes(url)) == 5


def test_restore_an_s3_lake_from_a_folder_and_a_folder_from_s3(
    server: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twins = _twins(tmp_path, "restored")
    replica = tmp_path / "replica"
    replicate(twins.folder, replica)
    storage = open_storage(twins.url)
    shard = next(i.path for i in storage.list("pixels") if "/c/" in i.path)
    data = bytearray(storage.read(shard))
    data[len(data) // 2] ^= 0xFF
    storage.write(shard, bytes(data))
    table_file = next(i.path for i in storage.list("tables/instances") if i.path.endswith(".parquet"))
    storage.delete(table_file)
    assert not verify(twins.url, record=False).ok
    assert main(["restore", "--lake", twins.url, "--from", str(replica)]) == 0
    assert "restored" in capsys.readouterr().out
    report = verify(twins.url, record=False)
    assert report.ok, [str(p) for p in report.problems]
    _same_lake(twins)
    assert lake.open(twins.url).sql("SELECT operation FROM runs WHERE operation = 'restore'").height == 1

    local_shard = twins.folder / shard
    local_shard.write_bytes(bytes(data))  # the folder lake damaged alike: restored from the S3 lake
    assert not verify(twins.folder, record=False).ok
    assert main(["restore", "--lake", str(twins.folder), "--from", twins.url]) == 0
    assert verify(twins.folder, record=False).ok
    assert not list(tmp_path.glob(".lake-restore-*"))


def test_audit_phi_on_s3_equals_the_folder(server: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    twins = _twins(tmp_path, "audited")
    identifiers = tmp_path / "identifiers.txt"
    identifiers.write_text("QUIXOTE^ALONSO\nMRN448100\nMRN448107\n")
    planted = "tables/instances/notes.txt"  # a file that should not be there, holding an identifier
    (twins.folder / planted).write_text("seen MRN448107 here\n")
    open_storage(twins.url).write(planted, b"seen MRN448107 here\n")
    outputs = []
    for where in (twins.url, str(twins.folder)):
        assert main(["audit-phi", "--lake", where, "--identifiers", str(identifiers)]) == 1
        captured = capsys.readouterr()
        assert STAGING_PREFIX not in captured.out + captured.err
        outputs.append(captured.out)
    assert outputs[0] == outputs[1] and "hit(s) in 1 file(s)" in outputs[0]
    assert not any(i.path == "_lake_lease.json" for i in open_storage(twins.url).list())  # a reader: no lease


def test_export_teaching_from_s3_equals_the_folder(
    server: object, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    twins = _twins(tmp_path, "taught")
    out = tmp_path_factory.mktemp("teaching")  # outside the folders of the keys
    query = "SELECT StudyInstanceUID FROM studies ORDER BY 1"
    for name, where, key in (("s3", twins.url, twins.key), ("folder", str(twins.folder), twins.folder_key)):
        args = ["export", "teaching", "--lake", where, "--sql", query, "--out", str(out / name)]
        assert main([*args, "--key-file", str(key)]) == 0
    err = capsys.readouterr().err
    assert STAGING_PREFIX not in err
    written = sorted(p.relative_to(out / "folder") for p in (out / "folder").rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(out / "s3") for p in (out / "s3").rglob("*") if p.is_file())
    assert any(p.suffix == ".png" for p in written)
    for rel in written:
        if rel.name not in ("manifest.json", "index.html", "DICOMDIR"):  # these name the run, the lake, a new UID
            assert (out / "s3" / rel).read_bytes() == (out / "folder" / rel).read_bytes(), rel
    for table in ("instances", "studies"):
        assert _rows(twins.url, table) == _rows(str(twins.folder), table)
    runs = "SELECT count(*) FROM runs WHERE operation = 'export-teaching'"
    assert lake.open(twins.url).sql(runs).item() == 1


@pytest.mark.parametrize("command", [["optimize"], ["vacuum"], ["review", "list"], ["audit-phi"]])
def test_a_staged_command_on_a_missing_s3_lake_is_a_clear_error(
    server: object, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{BUCKET}/missing"
    assert main([*command, "--lake", url]) == 2
    err = capsys.readouterr().err
    assert f"no lake at {url}" in err and STAGING_PREFIX not in err and "Traceback" not in err
    assert list(open_storage(url).list()) == []  # no lease was taken
