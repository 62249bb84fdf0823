"""The lake in an object store (S3 and S3-compatible servers), through ``obstore``.

Atomicity is the store's: a PUT replaces an object whole; put-if-absent is ``If-None-Match: *`` and
compare-and-swap is ``If-Match: <ETag>`` (S3 has both since 2024; MinIO, Ceph and moto too).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from lake.errors import StorageError, StorageNotFoundError
from lake.storage.base import ObjectInfo, Storage, check_path, join
from lake.storage.options import S3Settings, s3_settings


def _obstore() -> Any:
    try:
        import obstore
    except ImportError as exc:  # pragma: no cover - a dependency
        raise StorageError("lakes in object storage need obstore: pip install obstore") from exc
    return obstore


class ObjectStorage(Storage):
    """A lake under ``s3://bucket/prefix``."""

    def __init__(self, url: str, settings: S3Settings | None = None) -> None:
        self.settings = settings or s3_settings(url)
        self.url = f"s3://{self.settings.bucket}/{self.settings.prefix}".rstrip("/")
        from obstore.store import S3Store

        self._store = S3Store(
            self.settings.bucket,
            config=self.settings.object_store_config(),  # type: ignore[arg-type]
            client_options={"allow_http": self.settings.allow_http},
        )

    def _key(self, path: str, allow_root: bool = False) -> str:
        return join(self.settings.prefix, check_path(path, allow_root=allow_root))

    def _relative(self, key: str) -> str:
        prefix = self.settings.prefix
        return key[len(prefix) + 1 :] if prefix else key

    def _info(self, path: str, meta: Any) -> ObjectInfo:
        modified = meta.get("last_modified") or datetime.fromtimestamp(0, UTC)
        return ObjectInfo(path, int(meta["size"]), str(meta.get("e_tag") or meta.get("version") or ""), modified)

    def _failed(self, action: str, path: str, exc: Exception) -> StorageError:
        return StorageError(f"cannot {action} {path} in the lake at {self.url}: {type(exc).__name__}")

    def read(self, path: str) -> bytes:
        obstore = _obstore()
        key = self._key(path)
        try:
            return bytes(obstore.get(self._store, key).bytes())
        except FileNotFoundError:
            raise StorageNotFoundError(f"{path} is not in the lake at {self.url}") from None
        except Exception as exc:
            raise self._failed("read", path, exc) from None

    def get(self, path: str) -> tuple[bytes, ObjectInfo]:
        obstore = _obstore()
        key = self._key(path)
        try:
            result = obstore.get(self._store, key)
            return bytes(result.bytes()), self._info(path, result.meta)
        except FileNotFoundError:
            raise StorageNotFoundError(f"{path} is not in the lake at {self.url}") from None
        except Exception as exc:
            raise self._failed("read", path, exc) from None

    def read_range(self, path: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"a byte range is 0 <= start <= end, not [{start}, {end})")
        if end == start:
            return b""
        obstore = _obstore()
        key = self._key(path)
        try:
            return bytes(obstore.get_range(self._store, key, start=start, end=end))
        except FileNotFoundError:
            raise StorageNotFoundError(f"{path} is not in the lake at {self.url}") from None
        except Exception as exc:
            raise self._failed("read", path, exc) from None

    def _put(self, path: str, data: bytes, mode: Any) -> ObjectInfo | None:
        obstore = _obstore()
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        key = self._key(path)
        try:
            result = obstore.put(self._store, key, data, mode=mode)
        except (AlreadyExistsError, PreconditionError):
            return None
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._failed("write", path, exc) from None
        return ObjectInfo(path, len(data), str(result.get("e_tag") or ""), datetime.now(UTC))

    def write(self, path: str, data: bytes) -> ObjectInfo:
        info = self._put(path, data, "overwrite")
        assert info is not None  # an overwrite has no precondition
        return info

    def create(self, path: str, data: bytes) -> ObjectInfo | None:
        return self._put(path, data, "create")

    def replace(self, path: str, data: bytes, version: str) -> ObjectInfo | None:
        return self._put(path, data, {"e_tag": version})

    def head(self, path: str) -> ObjectInfo | None:
        obstore = _obstore()
        key = self._key(path)
        try:
            return self._info(path, obstore.head(self._store, key))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._failed("look up", path, exc) from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        obstore = _obstore()
        base = self._key(prefix, allow_root=True)
        found: list[ObjectInfo] = []
        try:
            for chunk in obstore.list(self._store, prefix=base or None):
                found.extend(self._info(self._relative(meta["path"]), meta) for meta in chunk)
        except Exception as exc:
            raise self._failed("list", prefix or "the root", exc) from None
        yield from sorted(found, key=lambda info: info.path)

    def delete(self, path: str) -> bool:
        if self.head(path) is None:
            return False
        obstore = _obstore()
        try:
            obstore.delete(self._store, self._key(path))
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self._failed("delete", path, exc) from None
        return True

    def uri(self, path: str = "") -> str:
        return f"s3://{self.settings.bucket}/{self._key(path, allow_root=True)}".rstrip("/")

    def storage_options(self) -> dict[str, str]:
        return self.settings.delta_options()

    def arrow_filesystem(self) -> tuple[Any, str]:
        import pyarrow.fs

        s = self.settings
        kwargs: dict[str, Any] = {"region": s.region}
        if s.endpoint:
            scheme, _, host = s.endpoint.partition("://")
            kwargs.update(endpoint_override=host, scheme=scheme)
        if s.access_key_id:
            kwargs.update(access_key=s.access_key_id, secret_key=s.secret_access_key, session_token=s.session_token)
        return pyarrow.fs.S3FileSystem(**kwargs), join(s.bucket, s.prefix)

    def zarr_store(self, path: str, read_only: bool = True) -> Any:
        from obstore.store import S3Store
        from zarr.storage import ObjectStore

        store = S3Store(
            self.settings.bucket,
            prefix=self._key(path, allow_root=True) or None,
            config=self.settings.object_store_config(),  # type: ignore[arg-type]
            client_options={"allow_http": self.settings.allow_http},
        )
        return ObjectStore(store, read_only=read_only)
