"""Local folders, files and zip archives."""

from __future__ import annotations

import os
import stat
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from lake.errors import RejectedInput, SourceError
from lake.sources.base import SourceContext, SourceItem, SourceLimits


def _file_reader(path: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except PermissionError as exc:
            raise RejectedInput("read", "unreadable_permission", str(exc)) from exc
        except OSError as exc:
            raise RejectedInput("read", f"unreadable_{type(exc).__name__}", str(exc)) from exc

    return read


def _zip_items(path: Path, limits: SourceLimits) -> Iterator[SourceItem]:
    label = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield SourceItem(label, None, bytes, RejectedInput("read", "bad_zip", str(exc)))
        return
    with archive:
        total = 0
        for info in archive.infolist():
            if info.is_dir():
                continue
            member_label = f"{label}!{info.filename}"
            total += info.file_size
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > limits.max_zip_member_bytes or (
                info.file_size > 1024**2 and ratio > limits.max_zip_ratio
            ):
                yield SourceItem(
                    member_label, info.file_size, bytes, RejectedInput("limits", "zip_member_too_large_or_bomb")
                )
                continue
            if total > limits.max_zip_total_bytes:
                yield SourceItem(member_label, info.file_size, bytes, RejectedInput("limits", "zip_total_too_large"))
                continue
            # Members are read in memory, never extracted: a path like ../../etc cannot escape.
            yield SourceItem(member_label, info.file_size, _zip_member_reader(path, info.filename, info.file_size))


def _zip_member_reader(path: Path, name: str, size: int) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with zipfile.ZipFile(path) as archive, archive.open(name) as f:
                data = f.read(size + 1)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
            raise RejectedInput("read", f"bad_zip_member_{type(exc).__name__}", str(exc)) from exc
        if len(data) > size:  # a header lying about its size
            raise RejectedInput("limits", "zip_member_size_mismatch")
        return data

    return read


def _file_item(path: Path, limits: SourceLimits) -> Iterator[SourceItem]:
    label = str(path)
    try:
        st = path.stat()
    except OSError as exc:
        yield SourceItem(label, None, bytes, RejectedInput("read", f"unreadable_{type(exc).__name__}", str(exc)))
        return
    if not stat.S_ISREG(st.st_mode):
        yield SourceItem(label, None, bytes, RejectedInput("read", "not_a_regular_file"))
        return
    if st.st_size > limits.max_file_bytes:
        yield SourceItem(label, st.st_size, bytes, RejectedInput("limits", "file_too_large"))
        return
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        yield from _zip_items(path, limits)
        return
    yield SourceItem(label, st.st_size, _file_reader(path))


class _Exclusions:
    """Paths never read as sources (the lake itself, its key and vault), compared as real paths."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]], on_skip: Callable[[Path], None] | None) -> None:
        self.real = {os.path.realpath(p) for p in paths}
        self.on_skip = on_skip

    def skip(self, path: Path, real: str) -> bool:
        """True (and reported) when ``real``, the real path of ``path``, is excluded."""
        if real not in self.real:
            return False
        if self.on_skip is not None:
            self.on_skip(path)
        return True

    def covering(self, real: str) -> str | None:
        """The excluded folder that holds ``real`` (or is it), if any."""
        for excluded in self.real:
            if real == excluded or real.startswith(excluded.rstrip(os.sep) + os.sep):
                return excluded
        return None


def _walk(root: Path, limits: SourceLimits, exclusions: _Exclusions) -> Iterator[SourceItem]:
    """Depth-first, sorted, not following symlinked folders (no loops); symlinked files are read."""
    stack = [(root, os.path.realpath(root))]
    while stack:
        folder, real_folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield SourceItem(
                str(folder), None, bytes, RejectedInput("read", f"unreadable_folder_{type(exc).__name__}", str(exc))
            )
            continue
        subfolders = []
        for entry in entries:
            try:
                symlink = entry.is_symlink()
                real = os.path.realpath(entry.path) if symlink else os.path.join(real_folder, entry.name)
                if exclusions.real and exclusions.skip(Path(entry.path), real):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append((Path(entry.path), real))
                elif symlink and Path(entry.path).is_dir():
                    continue  # symlinked folders are skipped: they can loop or leave the source
                else:
                    yield from _file_item(Path(entry.path), limits)
            except OSError as exc:
                yield SourceItem(
                    entry.path, None, bytes, RejectedInput("read", f"unreadable_{type(exc).__name__}", str(exc))
                )
        stack.extend(reversed(subfolders))


def check_sources(sources: Iterable[str | os.PathLike[str]]) -> None:
    """Raise :class:`SourceError` for a source that does not exist (a typo on the command line
    stops the run before anything is written)."""
    for source in sources:
        path = Path(source)
        if not path.exists() and not path.is_symlink():
            raise SourceError(f"source {path} does not exist: check the path (folders, files and .zip files)")


def iter_sources(
    sources: Iterable[str | os.PathLike[str]],
    limits: SourceLimits | None = None,
    exclude: Iterable[str | os.PathLike[str]] = (),
    on_skip: Callable[[Path], None] | None = None,
    on_empty: Callable[[Path], None] | None = None,
) -> Iterator[SourceItem]:
    """Every file under the given sources, in a stable order. Raises :class:`SourceError` for a
    source that does not exist at all (a typo on the command line should stop the run).

    Files and folders in ``exclude`` (and everything in such a folder) are never read:
    ``on_skip(path)`` is called for each one met. ``on_empty(source)`` is called for a source
    that held no file to read.
    """
    limits = limits or SourceLimits()
    exclusions = _Exclusions(exclude, on_skip)
    for source in sources:
        path = Path(source)
        check_sources([path])
        found = 0
        covering = exclusions.covering(os.path.realpath(path))
        if covering is not None:
            exclusions.skip(path, covering)
        elif path.is_dir():
            for item in _walk(path, limits, exclusions):
                found += 1
                yield item
        else:
            for item in _file_item(path, limits):
                found += 1
                yield item
        if not found and on_empty is not None:
            on_empty(path)


class LocalSource:
    """A folder (read recursively), a file or a zip: :func:`iter_sources` over one path.

    It keeps no cursor: an interrupted run resumes because the run recognises files it committed
    by their content (keyed ``source_ref``)."""

    def __init__(self, path: Path, context: SourceContext) -> None:
        self.path = path
        self.label = str(path)
        self.context = context

    def items(self) -> Iterator[SourceItem]:
        c = self.context
        return iter_sources([self.path], c.limits, exclude=c.exclude, on_skip=c.on_skip, on_empty=c.on_empty)

    def report(self) -> Counter[str]:
        return Counter()

    def close(self) -> None:
        pass
