"""The source protocol: what an ingest reads, whatever it comes from, chosen by URL scheme.

A :class:`Source` yields :class:`SourceItem` s (bytes read on demand, a ``label`` only the vault
sees). The run calls each item's ``on_durable`` once its outcome (ingested, duplicate, rejected) is
committed to the lake: a source that keeps a resumable cursor (a PACS pull remembering the studies
it completed) advances it only then, so a run killed at any point resumes without losing a study.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lake.errors import RejectedInput, SourceError

if TYPE_CHECKING:
    from lake.keys import LakeKey
    from lake.sources.filters import PullOptions


@dataclass(frozen=True)
class SourceLimits:
    """Guards against hostile inputs: oversized files, zip bombs."""

    max_file_bytes: int = 4 * 1024**3
    max_zip_member_bytes: int = 2 * 1024**3
    max_zip_ratio: float = 200.0  # uncompressed/compressed above this is treated as a bomb
    max_zip_total_bytes: int = 64 * 1024**3


@dataclass
class SourceItem:
    """One input file. ``read()`` returns its bytes or raises :class:`RejectedInput`.

    ``on_durable`` (if set) is called by the run once the item's outcome is committed.
    """

    label: str
    size: int | None
    _reader: Callable[[], bytes] = field(repr=False)
    error: RejectedInput | None = None
    on_durable: Callable[[], None] | None = field(default=None, repr=False)

    def read(self) -> bytes:
        if self.error is not None:
            raise self.error
        return self._reader()


class Source(Protocol):
    """One input of an ingest (a folder, a zip, a PACS)."""

    #: Where it reads from (a path, a URL without credentials): for the vault's run log only.
    label: str

    def items(self) -> Iterator[SourceItem]:
        """Every item to read, in a stable order."""
        ...

    def report(self) -> Counter[str]:
        """PHI-free counts for the run's summary (a PACS pull: studies found, pulled, complete...)."""
        ...

    def close(self) -> None:
        """Stop reading (a run interrupted mid-way): end connections and threads."""
        ...


@dataclass
class SourceContext:
    """What a source may need from the run: the lake's key (keyed references), the vault (where a
    pull's cursor lives, beside the key), the guards, the local exclusions and the PACS options."""

    key: LakeKey | None = None
    vault: Path | None = None
    lake_id: str = ""  # a pull's cursor is per lake (two lakes may share a key and its vault)
    limits: SourceLimits = field(default_factory=SourceLimits)
    exclude: Iterable[str | os.PathLike[str]] = ()
    on_skip: Callable[[Path], None] | None = None
    on_empty: Callable[[Path], None] | None = None
    on_message: Callable[[str], None] | None = None
    pull: PullOptions | None = None
    #: called by a PACS source after each study with a :class:`lake.sources.pacs.PullProgress`
    on_progress: Callable[[Any], None] | None = None


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(spec: str | os.PathLike[str]) -> str:
    """The URL scheme of a source (``dicomweb``, ``dicomweb+https``), or ``""`` for a local path."""
    found = _SCHEME.match(os.fspath(spec)) if isinstance(spec, str) else None
    return found.group(1).lower() if found else ""


def _schemes() -> dict[str, Callable[[str, SourceContext], Source]]:
    from lake.sources.dicomweb import DicomWebSource
    from lake.sources.dimse import DimseSource

    return {
        "dicomweb": DicomWebSource, "dicomweb+http": DicomWebSource, "dicomweb+https": DicomWebSource,
        "dimse": DimseSource,
    }  # fmt: skip


def check_source(spec: str | os.PathLike[str]) -> None:
    """Raise :class:`SourceError` for a source that cannot be read at all (a missing path, a bad URL,
    missing credentials), before anything is written."""
    scheme = scheme_of(spec)
    if not scheme:
        from lake.sources.local import check_sources

        check_sources([spec])
        return
    opener = _schemes().get(scheme)
    if opener is None:
        raise SourceError(
            f"unknown source scheme {scheme}://: give a folder, a file, a .zip, "
            "dicomweb://HOST:PORT/PATH, dicomweb+https://HOST:PORT/PATH or dimse://AET@HOST:PORT"
        )
    check = getattr(opener, "check", None)
    if check is not None:
        check(str(spec))


def open_source(spec: str | os.PathLike[str], context: SourceContext) -> Source:
    """The source for ``spec``: a local path (folder, file, zip) or a URL chosen by its scheme."""
    check_source(spec)
    scheme = scheme_of(spec)
    if not scheme:
        from lake.sources.local import LocalSource

        return LocalSource(Path(spec), context)
    return _schemes()[scheme](str(spec), context)
