"""Replicas in object storage: an S3 API served by moto on loopback, started and stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import lake
from lake.cli import main
from lake.ingest import ingest
from lake.maintenance.verify import verify
from tests.faults.conftest import new_lake, table_rows

pytest.importorskip("moto.server", reason="moto[server] is not installed")
s3fs = pytest.importorskip("s3fs", reason="s3fs is not installed")


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from lake.testing.s3 import run_s3_server

    with run_s3_server() as server:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        server.make_bucket("replicas")
        try:
            yield server.endpoint
        finally:
            s3fs.S3FileSystem.clear_instance_cache()


def test_replicate_to_object_storage_and_restore(tmp_path: Path, corpus: Path, s3_endpoint: str) -> None:
    root, key = new_lake(tmp_path)
    ingest(root, [corpus], key_file=key, batch_size=4)
    url = "s3://replicas/lake1"
    assert main(["replicate", "--lake", str(root), "--to", url]) == 0
    fs = s3fs.S3FileSystem()
    assert fs.exists(f"{url}/lake.json") and fs.exists(f"{url}/_lake_replica.json")
    again = lake.maintenance.replicate.replicate(root, url)
    assert again.unchanged > again.copied > 0  # only the runs table's new files
    before = table_rows(root, "instances")
    for shard in [p for p in (root / "pixels").rglob("*") if p.is_file() and "/c/" in p.as_posix()][:2]:
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))
    assert not verify(root, record=False).ok
    assert main(["restore", "--lake", str(root), "--from", url]) == 0
    report = verify(root, record=False)
    assert report.ok, [str(p) for p in report.problems]
    assert table_rows(root, "instances") == before
    assert not list(tmp_path.glob("**/.lake-restore-*"))
    runs = lake.open(root).sql("SELECT operation, parameters FROM runs WHERE operation = 'replicate'")
    assert len(runs) == 2 and all("replicas" not in p for p in runs["parameters"])
