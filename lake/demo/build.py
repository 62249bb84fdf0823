"""Build the demo lake: write the synthetic archive (:mod:`lake.demo.archive`), then ingest it as any archive."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lake.deid.identity import PatientIdentity
from lake.demo.archive import Archive, ArchiveSpec, write_archive
from lake.errors import ConfigError
from lake.ingest import IngestSummary, ingest

#: The demo's identity: PatientID alone, so the studies a scanner wrote without an issuer link to
#: the same MRN's studies with one (see lake.deid.identity).
DEMO_IDENTITY = PatientIdentity.PATIENT_ID


@dataclass
class DemoBuild:
    archive: Archive
    summary: IngestSummary
    kept: Path | None  # where the archive is, if it was kept (else it was deleted after the ingest)


def build_demo(
    lake_path: str | os.PathLike[str],
    spec: ArchiveSpec | None = None,
    key_file: str | os.PathLike[str] | None = None,
    workers: int = 1,
    archive_dir: str | os.PathLike[str] | None = None,
    on_file: Callable[[int], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> DemoBuild:
    """Write the archive and ingest it into ``lake_path`` (created if missing, with the demo's identity).

    The archive goes to ``archive_dir`` (a new or empty folder outside the lake, kept) or to a
    temporary folder deleted after the ingest. Raises :class:`ConfigError` for an ``archive_dir``
    inside the lake or holding it, :class:`SourceError` without pydicom's and pydicom-data's test
    files or for a non-empty ``archive_dir``, and what :func:`lake.ingest.ingest` raises.
    """
    lake_root = Path(lake_path).resolve()
    identity = None if (lake_root / "lake.json").exists() else DEMO_IDENTITY
    if archive_dir is not None:
        where = Path(archive_dir).resolve()
        if where == lake_root or lake_root in where.parents or where in lake_root.parents:
            raise ConfigError(
                f"the archive folder {archive_dir} and the lake {lake_path} overlap: "
                "give an archive folder outside the lake"
            )
        archive = write_archive(where, spec)
        summary = _ingest(lake_path, archive, key_file, workers, on_file, on_message, identity)
        return DemoBuild(archive, summary, where)
    with tempfile.TemporaryDirectory(prefix="lake-demo-archive-") as tmp:
        archive = write_archive(Path(tmp) / "archive", spec)
        summary = _ingest(lake_path, archive, key_file, workers, on_file, on_message, identity)
    return DemoBuild(archive, summary, None)


def _ingest(
    lake_path: str | os.PathLike[str],
    archive: Archive,
    key_file: str | os.PathLike[str] | None,
    workers: int,
    on_file: Callable[[int], None] | None,
    on_message: Callable[[str], None] | None,
    identity: PatientIdentity | None,
) -> IngestSummary:
    return ingest(
        lake_path,
        [archive.root],
        key_file=key_file,
        workers=workers,
        on_file=on_file,
        on_message=on_message,
        patient_identity=identity,
    )
