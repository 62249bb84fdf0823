"""The lake in a local folder: atomic replace by rename, put-if-absent by hard link."""

from __future__ import annotations

import errno
import fcntl
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lake.errors import StorageError, StorageNotFoundError
from lake.storage.base import ObjectInfo, Storage, check_path


def _version(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _info(path: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(path, st.st_size, _version(st), datetime.fromtimestamp(st.st_mtime, UTC))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage(Storage):
    """A lake folder. Temporary files (``.<name>.<random>.tmp``) live beside their target until renamed."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    def _file(self, path: str) -> Path:
        return self.root / check_path(path)

    def _temporary(self, data: bytes, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def read(self, path: str) -> bytes:
        try:
            return self._file(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise StorageNotFoundError(f"{path} is not in the lake at {self.url}") from None

    def get(self, path: str) -> tuple[bytes, ObjectInfo]:
        try:
            with open(self._file(path), "rb") as f:
                st = os.fstat(f.fileno())  # the inode read is the version: a replace makes a new one
                return f.read(), _info(path, st)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise StorageNotFoundError(f"{path} is not in the lake at {self.url}") from None

    def read_range(self, path: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"a byte range is 0 <= start <= end, not [{start}, {end})")
        try:
            with open(self._file(path), "rb") as f:
                return os.pread(f.fileno(), end - start, start)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise StorageNotFoundError(f"{path} is not in the lake at {self.url}") from None

    def write(self, path: str, data: bytes) -> ObjectInfo:
        target = self._file(path)
        tmp = self._temporary(data, target)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {path} in the lake at {self.url}: {exc.strerror}") from None
        _fsync_dir(target.parent)
        return _info(path, target.stat())

    def create(self, path: str, data: bytes) -> ObjectInfo | None:
        target = self._file(path)
        tmp = self._temporary(data, target)
        try:
            os.link(tmp, target)  # fails if the target exists: the complete file appears at once
        except FileExistsError:
            return None
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)
        return _info(path, target.stat())

    def replace(self, path: str, data: bytes, version: str) -> ObjectInfo | None:
        target = self._file(path)
        try:
            fd = os.open(target, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # replacers of the same version queue here
            try:
                current = target.stat()
            except FileNotFoundError:
                return None
            if _version(current) != version:
                return None
            tmp = self._temporary(data, target)
            os.replace(tmp, target)
            _fsync_dir(target.parent)
            return _info(path, target.stat())
        finally:
            os.close(fd)

    def head(self, path: str) -> ObjectInfo | None:
        try:
            st = self._file(path).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _info(path, st) if not os.path.isdir(self._file(path)) else None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root / check_path(prefix, allow_root=True) if prefix else self.root
        found: list[ObjectInfo] = []
        for folder, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # a write in progress
                full = Path(folder) / name
                try:
                    found.append(_info(full.relative_to(self.root).as_posix(), full.stat()))
                except FileNotFoundError:
                    continue
        yield from sorted(found, key=lambda info: info.path)

    def delete(self, path: str) -> bool:
        try:
            self._file(path).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EISDIR, errno.EPERM):
                raise StorageError(f"{path} in the lake at {self.url} is a folder, not a file") from None
            raise
        return True

    def uri(self, path: str = "") -> str:
        return str(self.root / check_path(path)) if path else str(self.root)

    def storage_options(self) -> dict[str, str]:
        return {}

    def arrow_filesystem(self) -> tuple[Any, str]:
        import pyarrow.fs

        return pyarrow.fs.LocalFileSystem(), str(self.root)

    def zarr_store(self, path: str, read_only: bool = True) -> Any:
        from zarr.storage import LocalStore

        return LocalStore(self.root / check_path(path), read_only=read_only)

    def local_path(self, path: str) -> Path | None:
        return self.root / check_path(path) if path else self.root
