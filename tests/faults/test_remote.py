"""Replicas in object storage: an S3 API served by moto on loopback, started and stopped by PID."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "moto server did not start"
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }.items():
            monkeypatch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir("replicas")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
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
