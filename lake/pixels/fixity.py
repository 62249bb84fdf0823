"""Checksums of the pixel store's files, recorded at write time, for ``lake verify``.

Each array folder ``pixels/<series>/<group>/`` holds a ``fixity.json`` sidecar::

    {"format": 1, "files": {"pixels/<series>/<group>/c/0/0/0": {"sha256": "...", "size": 123, "run": "..."}}}

with one entry per shard file and for the array's ``zarr.json``, written after every batch that
touched them (the sidecar is replaced atomically). Paths are relative to the lake root and use
``/``. Only pseudonymous UIDs appear in them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

SIDECAR = "fixity.json"
FORMAT = 1


class FixityStatus(StrEnum):
    CHANGED = "changed"  # the file's bytes differ from what was written
    MISSING = "missing"  # recorded but no longer on disk
    UNRECORDED = "unrecorded"  # on disk but never recorded (e.g. a crash before the record)


@dataclass(frozen=True)
class FixityProblem:
    path: str  # relative to the lake root
    status: FixityStatus


def _pixels_root(lake_paths: Any) -> Path:
    """Accepts a :class:`lake.config.LakePaths` or the lake root folder."""
    pixels = getattr(lake_paths, "pixels", None)
    return Path(pixels) if pixels is not None else Path(lake_paths) / "pixels"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _array_dirs(pixels: Path) -> Iterator[Path]:
    if pixels.is_dir():
        for meta in sorted(pixels.glob("*/*/zarr.json")):
            yield meta.parent


def _array_files(array_dir: Path) -> Iterator[Path]:
    yield array_dir / "zarr.json"
    chunks = array_dir / "c"
    if chunks.is_dir():
        yield from sorted(p for p in chunks.rglob("*") if p.is_file())


def shard_checksums(lake_paths: Any) -> dict[str, str]:
    """SHA-256 of every pixel array file now on disk (shards and ``zarr.json``), by lake-relative path."""
    pixels = _pixels_root(lake_paths)
    return {
        path.relative_to(pixels.parent).as_posix(): sha256_file(path)
        for array_dir in _array_dirs(pixels)
        for path in _array_files(array_dir)
    }


def recorded_checksums(lake_paths: Any) -> dict[str, dict[str, Any]]:
    """What the sidecars recorded: lake-relative path -> ``{"sha256", "size", "run"}``."""
    out: dict[str, dict[str, Any]] = {}
    for array_dir in _array_dirs(_pixels_root(lake_paths)):
        sidecar = array_dir / SIDECAR
        if sidecar.is_file():
            out.update(json.loads(sidecar.read_text(encoding="utf-8"))["files"])
    return out


def record_checksums(array_dir: Path, files: Iterable[Path], run: str | None) -> None:
    """Hash ``files`` (inside ``array_dir``) and merge them into the array's sidecar."""
    lake_root = array_dir.parent.parent.parent
    sidecar = array_dir / SIDECAR
    data: dict[str, Any] = {"format": FORMAT, "files": {}}
    if sidecar.is_file():
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    for path in files:
        if path.is_file():
            rel = path.relative_to(lake_root).as_posix()
            data["files"][rel] = {"sha256": sha256_file(path), "size": path.stat().st_size, "run": run}
    tmp = sidecar.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=1), encoding="utf-8")
    os.replace(tmp, sidecar)


def verify_fixity(lake_paths: Any) -> list[FixityProblem]:
    """Files whose bytes changed, recorded files that are gone, and files never recorded."""
    recorded = recorded_checksums(lake_paths)
    current = shard_checksums(lake_paths)
    problems = [
        FixityProblem(path, FixityStatus.CHANGED if path in current else FixityStatus.MISSING)
        for path, rec in sorted(recorded.items())
        if current.get(path) != rec["sha256"]
    ]
    problems += [FixityProblem(p, FixityStatus.UNRECORDED) for p in sorted(set(current) - set(recorded))]
    return problems
