"""Object store settings from the environment, spelled for each library that reads the lake.

Only the environment carries credentials and endpoints (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` for an S3-compatible
server such as MinIO, Ceph or moto); nothing of them is written to the lake, its logs or its errors.
An ``http://`` endpoint is allowed (a server on the same host or network); otherwise HTTPS is required.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from lake.errors import StorageError

#: URL schemes the lake can live under (object stores through ``obstore``).
SCHEMES = ("s3",)


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str
    endpoint: str | None
    region: str
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None

    @property
    def allow_http(self) -> bool:
        return bool(self.endpoint and self.endpoint.startswith("http://"))

    def object_store_config(self) -> dict[str, str]:
        """Keys of the Rust ``object_store`` crate (obstore, deltalake, polars all take these)."""
        config = {"aws_region": self.region}
        if self.endpoint:
            config["aws_endpoint"] = self.endpoint
        if self.access_key_id:
            config["aws_access_key_id"] = self.access_key_id
        if self.secret_access_key:
            config["aws_secret_access_key"] = self.secret_access_key
        if self.session_token:
            config["aws_session_token"] = self.session_token
        return config

    def delta_options(self) -> dict[str, str]:
        """deltalake's ``storage_options``: conditional puts make concurrent commits safe on S3 without
        a DynamoDB lock table (S3 and S3-compatible servers that honour ``If-None-Match``)."""
        options = {key.upper(): value for key, value in self.object_store_config().items()}
        options["AWS_ENDPOINT_URL"] = options.pop("AWS_ENDPOINT", "") or ""
        if not options["AWS_ENDPOINT_URL"]:
            del options["AWS_ENDPOINT_URL"]
        if self.allow_http:
            options["AWS_ALLOW_HTTP"] = "true"
        options["conditional_put"] = "etag"
        return options


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_object_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` names an object store (``s3://...``) rather than a local folder."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def s3_settings(url: str, environ: Mapping[str, str] | None = None) -> S3Settings:
    """Bucket and prefix of ``s3://bucket/prefix``, with credentials and endpoint from the environment."""
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3":
        raise StorageError(f"{_scheme(url) or 'a path'}:// is not an object store the lake can use (use s3://bucket/prefix)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise StorageError("an s3:// lake URL is s3://bucket/prefix: credentials and options come from the environment")
    if not parts.netloc:
        raise StorageError("an s3:// lake URL needs a bucket: s3://bucket/prefix")
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise StorageError("AWS_ENDPOINT_URL must start with http:// or https://")
    return S3Settings(
        bucket=parts.netloc,
        prefix=parts.path.strip("/"),
        endpoint=endpoint.rstrip("/") if endpoint else None,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        session_token=env.get("AWS_SESSION_TOKEN") or None,
    )
