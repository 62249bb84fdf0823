"""The storage layer on S3: the conformance suite against moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from lake.errors import StorageError
from lake.storage import ObjectStorage, open_storage
from lake.storage.options import s3_settings
from lake.testing.storage import StorageTests

pytest.importorskip("moto.server", reason="moto[server] is not installed")
pytest.importorskip("obstore", reason="obstore is not installed")

from lake.testing.s3 import S3Server, run_s3_server

BUCKET = "lake-storage-tests"
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with run_s3_server() as server:
        server.make_bucket(BUCKET)
        yield server


class TestObjectStorage(StorageTests):
    @pytest.fixture
    def storage(self, s3: S3Server) -> Iterator[ObjectStorage]:
        with s3.environment():
            yield ObjectStorage(f"s3://{BUCKET}/t{next(_prefixes)}/lake")


def test_the_environment_gives_endpoint_and_credentials_never_the_url() -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    settings = s3_settings("s3://bucket/a/b/", env)
    assert (settings.bucket, settings.prefix, settings.allow_http) == ("bucket", "a/b", True)
    options = settings.delta_options()
    assert options["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9" and options["conditional_put"] == "etag"
    assert not s3_settings("s3://bucket", {}).allow_http  # HTTPS unless an http:// endpoint is set
    for bad in ("s3://", "s3://user:pw@bucket/x", "s3://bucket/x?endpoint=y", "gs://bucket/x"):
        with pytest.raises(StorageError) as caught:
            s3_settings(bad, env)
        assert "pw" not in str(caught.value)
    with pytest.raises(StorageError):
        s3_settings("s3://bucket/x", {"AWS_ENDPOINT_URL": "127.0.0.1:9"})


def test_open_storage_gives_object_storage_for_s3_urls(s3: S3Server) -> None:
    with s3.environment():
        storage = open_storage(f"s3://{BUCKET}/opened")
    assert isinstance(storage, ObjectStorage) and storage.uri("tables/x") == f"s3://{BUCKET}/opened/tables/x"
