"""Replicas in object storage (``s3://bucket/prefix`` and other fsspec URLs).

Object stores keep no modification times, so the replica holds a manifest ``_lake_replica.json``
of what was copied (lake-relative path -> size, modification time, SHA-256); an incremental copy
uploads only files whose size or time changed. The manifest is written last, after the data and
the metadata, so an interrupted copy is finished by the next one. Credentials and endpoints come
from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``...), never from the lake.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lake.errors import ReplicaError
from lake.pixels.fixity import sha256_file

MANIFEST = "_lake_replica.json"


def is_url(dest: str | os.PathLike[str]) -> bool:
    text = str(dest)
    return "://" in text and not text.startswith("file://")


def _fs(url: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency of the stack
        raise ReplicaError("object storage replicas need fsspec (and s3fs for s3:// URLs)") from exc
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise ReplicaError(f"cannot open {url.split('://')[0]}:// storage: {exc}") from exc
    return fs, str(root).rstrip("/")


def _manifest(fs: Any, root: str) -> dict[str, dict[str, Any]]:
    path = f"{root}/{MANIFEST}"
    if not fs.exists(path):
        return {}
    files: dict[str, dict[str, Any]] = json.loads(fs.cat_file(path))["files"]
    return files


def push(files: dict[str, Path], ordered: list[str], url: str, counts: dict[str, int]) -> None:
    """Upload ``files`` (lake-relative path -> local path) in ``ordered`` order to ``url``."""
    fs, root = _fs(url)
    fs.makedirs(root, exist_ok=True)
    manifest = _manifest(fs, root)
    for rel in ordered:
        st = files[rel].stat()
        seen = manifest.get(rel)
        if seen is not None and seen["size"] == st.st_size and seen["mtime_ns"] == st.st_mtime_ns:
            counts["unchanged"] += 1
            continue
        fs.put_file(str(files[rel]), f"{root}/{rel}")
        manifest[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(files[rel])}
        counts["copied"] += 1
        counts["bytes_copied"] += st.st_size
    for rel in sorted(set(manifest) - set(files)):
        fs.rm_file(f"{root}/{rel}")
        del manifest[rel]
        counts["deleted"] += 1
    fs.pipe_file(f"{root}/{MANIFEST}", json.dumps({"format": 1, "files": manifest}, sort_keys=True).encode())


def fetch(url: str, near: Path) -> Path:
    """Download the replica at ``url`` into a new temporary folder beside ``near``; checks each SHA-256.

    The caller removes the folder. Raises :class:`ReplicaError` for a missing or damaged replica.
    """
    fs, root = _fs(url)
    manifest = _manifest(fs, root)
    if not manifest:
        raise ReplicaError(f"no lake replica at {url} (no {MANIFEST})")
    near.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".lake-restore-", dir=near))
    try:
        for rel, entry in sorted(manifest.items()):
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{root}/{rel}", str(target))
            if sha256_file(target) != entry["sha256"]:
                raise ReplicaError(f"the replica's file {rel} does not match its manifest; use another replica")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp
