"""One interface for the lake's files, whether they live in a folder or in an object store.

A :class:`Storage` is rooted at the lake (``/data/lake`` or ``s3://bucket/prefix``) and addresses its
files by lake-relative paths with ``/`` separators (``tables/instances/_delta_log/00000.json``). The
operations are the ones the lake needs and that object stores can do atomically:

- :meth:`Storage.write` replaces a file whole (readers see the old or the new content, never a part);
- :meth:`Storage.create` writes only if nothing is there yet (put-if-absent): commits and leases;
- :meth:`Storage.replace` writes only if the file is still the version read (compare-and-swap);
- :meth:`Storage.read`, :meth:`Storage.read_range`, :meth:`Storage.head`, :meth:`Storage.list`,
  :meth:`Storage.delete`.

The libraries that read the tables and arrays directly get what they need from the same object:
:meth:`Storage.uri` plus :meth:`Storage.storage_options` for deltalake and polars,
:meth:`Storage.arrow_filesystem` for pyarrow datasets (which DuckDB scans without extensions) and
:meth:`Storage.zarr_store` for zarr. Credentials and endpoints come from the environment
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``...), never from the lake's files.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lake.errors import StoragePathError


@dataclass(frozen=True)
class ObjectInfo:
    """A file of the lake as the storage sees it. ``version`` changes whenever the content is replaced
    (an object store's ETag; on a local disk inode, modification time and size)."""

    path: str
    size: int
    version: str
    modified: datetime


def check_path(path: str, allow_root: bool = False) -> str:
    """``path`` if it is a lake-relative path with ``/`` separators, else :class:`StoragePathError`."""
    if not isinstance(path, str):
        raise StoragePathError(f"a storage path is a string, not {type(path).__name__}")
    if path == "" and allow_root:
        return path
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise StoragePathError(
            f"{path!r} is not a path inside the lake: use '/'-separated relative parts without '.', '..' or empty parts"
        )
    return path


def join(*parts: str) -> str:
    """Lake-relative path of ``parts`` (empty parts dropped)."""
    return "/".join(part.strip("/") for part in parts if part and part.strip("/"))


class Storage(ABC):
    """The lake's files (see the module documentation). Implementations: :class:`lake.storage.local.LocalStorage`,
    :class:`lake.storage.objects.ObjectStorage`."""

    #: where the lake is: an absolute local path or an object store URL (``s3://bucket/prefix``)
    url: str

    @property
    def is_local(self) -> bool:
        return self.local_path("") is not None

    @abstractmethod
    def read(self, path: str) -> bytes:
        """The whole content of ``path`` (:class:`lake.errors.StorageNotFoundError` if absent)."""

    @abstractmethod
    def get(self, path: str) -> tuple[bytes, ObjectInfo]:
        """The content of ``path`` with the version it has (one consistent read, for compare-and-swap)."""

    @abstractmethod
    def read_range(self, path: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``path``."""

    @abstractmethod
    def write(self, path: str, data: bytes) -> ObjectInfo:
        """Replace ``path`` whole with ``data`` (atomic: readers see all of one version)."""

    @abstractmethod
    def create(self, path: str, data: bytes) -> ObjectInfo | None:
        """Write ``data`` at ``path`` only if nothing is there; ``None`` if something was."""

    @abstractmethod
    def replace(self, path: str, data: bytes, version: str) -> ObjectInfo | None:
        """Replace ``path`` only if its version is still ``version``; ``None`` if it changed or is gone."""

    @abstractmethod
    def head(self, path: str) -> ObjectInfo | None:
        """What is at ``path`` (``None`` if nothing)."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every file under the folder ``prefix`` (recursive), sorted by path."""

    @abstractmethod
    def delete(self, path: str) -> bool:
        """Remove ``path``; ``False`` if it was not there."""

    @abstractmethod
    def uri(self, path: str = "") -> str:
        """Where ``path`` is, as deltalake, polars and pyarrow spell it."""

    @abstractmethod
    def storage_options(self) -> dict[str, str]:
        """Options for deltalake and polars (``storage_options=``); empty for a local folder."""

    @abstractmethod
    def arrow_filesystem(self) -> tuple[Any, str]:
        """A ``pyarrow.fs.FileSystem`` and the lake's root in it (for ``pyarrow.dataset``)."""

    @abstractmethod
    def zarr_store(self, path: str, read_only: bool = True) -> Any:
        """A zarr v3 store rooted at ``path``."""

    def local_path(self, path: str) -> Path | None:
        """The local file of ``path`` where the storage is a folder (fast paths: mmap, flock), else ``None``."""
        return None

    def exists(self, path: str) -> bool:
        return self.head(path) is not None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
