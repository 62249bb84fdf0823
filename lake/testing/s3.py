"""An S3-compatible server on loopback for tests and benchmarks: moto's server mode, started and
stopped by PID (``pip install "moto[server]"``, part of the ``test`` extra).

    with run_s3_server() as s3:
        s3.make_bucket("lake-test")
        with s3.environment():          # AWS_ENDPOINT_URL and test credentials
            ...  # s3://lake-test/prefix
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str
    pid: int

    @property
    def env(self) -> dict[str, str]:
        """The environment a client of this server needs (test credentials, never real ones)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "lake-test",
            "AWS_SECRET_ACCESS_KEY": "lake-test",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    @contextmanager
    def environment(self) -> Iterator[dict[str, str]]:
        """Set :attr:`env` in ``os.environ`` for a block (restoring what was there)."""
        saved = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)
        try:
            yield self.env
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def make_bucket(self, name: str) -> None:
        import boto3

        env = self.env
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
        )
        client.create_bucket(Bucket=name)


@contextmanager
def run_s3_server(start_timeout: float = 60.0) -> Iterator[S3Server]:
    """Start moto's S3 server on a free loopback port; stop it (by PID) at the end of the block."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + start_timeout
        while True:  # wait for the condition "it accepts connections", not for a time
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("the moto S3 server exited at start") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.05)
        yield S3Server(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
