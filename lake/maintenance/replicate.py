"""``lake replicate`` and ``lake restore``: mirror a lake to another folder, incrementally.

A replica is a consistent snapshot: the source's write lock is held while copying, so no commit
lands halfway. Files are copied to a temporary name and renamed, data files first and the Delta
logs, checksum sidecars and ``lake.json`` last, so a replica interrupted mid-copy still shows its
previous snapshot. Unchanged files (same size and modification time, or same SHA-256 with
``checksum=True``) are skipped; files the source no longer has are deleted from the copy.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lake.catalog.tables import append, snapshot_files
from lake.config import CONFIG_NAME, LakePaths, read_config
from lake.errors import IntegrityError, ReplicaError
from lake.fixity import record_table_fixity
from lake.lock import write_lock
from lake.maintenance import remote
from lake.pixels.fixity import sha256_file
from lake.runs import append_run, new_run_id, utc_now

_NEVER_COPIED = {".lock"}
_TMP_SUFFIX = ".lake-copy-tmp"


@dataclass
class MirrorSummary:
    run_id: str
    copied: int = 0
    unchanged: int = 0
    deleted: int = 0
    bytes_copied: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_metadata(rel: str) -> bool:
    """Files that make new data visible: copied after the data they point to."""
    name = rel.rsplit("/", 1)[-1]
    return "/_delta_log/" in f"/{rel}" or name.endswith("fixity.json") or name in {CONFIG_NAME, "zarr.json"}


def _files(root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if name not in _NEVER_COPIED and not name.endswith(_TMP_SUFFIX):
                out[rel] = path
    return out


def _same(src: Path, dst: Path, checksum: bool) -> bool:
    if not dst.is_file():
        return False
    a, b = src.stat(), dst.stat()
    if a.st_size != b.st_size:
        return False
    if checksum:
        return sha256_file(src) == sha256_file(dst)
    return a.st_mtime_ns == b.st_mtime_ns


def copy_files(
    dst_root: Path,
    sizes: dict[str, int],
    same: Callable[[str, Path], bool],
    write: Callable[[str, Path], object],
    summary: MirrorSummary,
    on_file: Callable[[int], None] | None = None,
) -> None:
    """Make ``dst_root`` hold exactly the files ``sizes`` names (lake-relative path -> size), in the
    order of the module docstring: ``same(rel, dst)`` says a file is there already; ``write(rel, tmp)``
    writes one to a temporary name, renamed into place. Files not named are deleted, then empty
    folders and temporary files a killed copy left. Shared by :func:`mirror` and
    :func:`lake.maintenance.replicate_objects.pull`."""
    for rel in sorted(sizes, key=lambda rel: (_is_metadata(rel), rel.endswith(CONFIG_NAME), rel)):
        dst = dst_root / rel
        if on_file:
            on_file(sizes[rel])
        if same(rel, dst):
            summary.unchanged += 1
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + _TMP_SUFFIX)
        write(rel, tmp)
        os.replace(tmp, dst)
        summary.copied += 1
        summary.bytes_copied += sizes[rel]
    for rel, path in sorted(_files(dst_root).items(), reverse=True):
        if rel not in sizes:
            path.unlink()
            summary.deleted += 1
    for dirpath, dirs, names in os.walk(dst_root, topdown=False):
        if dirpath != str(dst_root) and not dirs and not names:
            os.rmdir(dirpath)
        elif dirpath != str(dst_root):
            for name in names:
                if name.endswith(_TMP_SUFFIX):
                    os.unlink(os.path.join(dirpath, name))


def mirror(
    src_root: Path,
    dst_root: Path,
    summary: MirrorSummary,
    checksum: bool = False,
    on_file: Callable[[int], None] | None = None,
) -> None:
    """Make ``dst_root`` a copy of ``src_root`` (see module docstring); ``on_file(nbytes)`` per file."""
    src_files = _files(src_root)
    copy_files(
        dst_root,
        {rel: path.stat().st_size for rel, path in src_files.items()},
        lambda rel, dst: _same(src_files[rel], dst, checksum),
        lambda rel, tmp: shutil.copy2(src_files[rel], tmp),
        summary,
        on_file,
    )


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def replicate(
    root: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    checksum: bool = False,
    on_file: Callable[[int], None] | None = None,
) -> MirrorSummary:
    """Copy the lake at ``root`` to the folder or object storage URL ``dest``, incrementally.

    ``on_file(nbytes)`` is called once per lake file (local replicas) for progress display. A lake in
    object storage (``s3://...``) is copied to a folder by :mod:`lake.maintenance.replicate_objects`
    (nothing is written to it: no lock, no ``runs`` row).

    Raises :class:`ReplicaError` when ``dest`` is inside the lake (or the lake inside it) or is
    another lake.
    """
    paths = LakePaths(root)
    config = read_config(paths)
    if not paths.is_local:
        return _replicate_from_objects(paths, config.lake_id, dest, checksum, on_file)
    if remote.is_url(dest):
        return _replicate_remote(paths, str(dest))
    target = Path(dest)
    if _inside(target, paths.root) or _inside(paths.root, target):
        raise ReplicaError(f"the replica {target} must be outside the lake {paths.root} and not contain it")
    if LakePaths(target).exists() and read_config(LakePaths(target)).lake_id != config.lake_id:
        raise ReplicaError(f"{target} holds another lake; replicate to an empty folder or this lake's replica")
    started = utc_now()
    summary = MirrorSummary(new_run_id("C"))
    target.mkdir(parents=True, exist_ok=True)
    with write_lock(paths.lock):
        mirror(paths.root, target, summary, checksum, on_file)
        params = {"checksum": checksum}
        append_run(paths, summary.run_id, "replicate", started, params, summary.to_dict(), "ok")
    return summary


def _replicate_from_objects(
    paths: LakePaths,
    lake_id: str,
    dest: str | os.PathLike[str],
    checksum: bool,
    on_file: Callable[[int], None] | None,
) -> MirrorSummary:
    from lake.maintenance.replicate_objects import pull

    if remote.is_url(dest):
        raise ReplicaError(f"a lake in object storage ({paths.location}) replicates to a folder; give --to DIR")
    target = Path(dest)
    if LakePaths(target).exists() and read_config(LakePaths(target)).lake_id != lake_id:
        raise ReplicaError(f"{target} holds another lake; replicate to an empty folder or this lake's replica")
    return pull(paths, target, checksum, on_file)


def _replicate_remote(paths: LakePaths, url: str) -> MirrorSummary:
    started = utc_now()
    summary = MirrorSummary(new_run_id("C"))
    counts: Counter[str] = Counter()
    with write_lock(paths.lock):
        files = _files(paths.root)
        ordered = sorted(files, key=lambda rel: (_is_metadata(rel), rel.endswith(CONFIG_NAME), rel))
        remote.push(files, ordered, url, counts)
        summary.copied, summary.unchanged = counts["copied"], counts["unchanged"]
        summary.deleted, summary.bytes_copied = counts["deleted"], counts["bytes_copied"]
        # the URL may carry a bucket name or credentials: only the scheme is recorded
        params = {"checksum": False, "storage": url.split("://", 1)[0]}
        append_run(paths, summary.run_id, "replicate", started, params, summary.to_dict(), "ok")
    return summary


def restore(root: str | os.PathLike[str], source: str | os.PathLike[str]) -> MirrorSummary:
    """Bring the lake at ``root`` back to the replica at ``source``, after verifying the replica.

    ``source`` is a folder or an object storage URL (downloaded beside the lake first: a lake in object
    storage through :mod:`lake.maintenance.replicate_objects`, another fsspec replica by its
    manifest, :func:`lake.maintenance.remote.fetch`). A lake in object storage is restored on a
    staged copy (``lake restore --lake s3://...``, :mod:`lake.storage.staging`). Every file
    is compared by SHA-256, so damaged files are replaced whatever their dates. Raises
    :class:`IntegrityError` when the replica itself fails verification.
    """
    if remote.is_url(source):
        near = Path(root).resolve().parent
        local = _fetch_replica(str(source), near)
        try:
            return restore(root, local)
        finally:
            shutil.rmtree(local, ignore_errors=True)
    from lake.maintenance.verify import verify

    src = LakePaths(source)
    config = read_config(src)
    paths = LakePaths(root)
    if paths.exists() and read_config(paths).lake_id != config.lake_id:
        raise ReplicaError(f"{source} is a replica of another lake than {paths.root}")
    report = verify(src.root, record=False)
    if not report.ok:
        raise IntegrityError(
            f"the replica {src.root} fails verification ({len(report.problems)} problems, first: "
            f"{report.problems[0]}); restore from another replica"
        )
    started = utc_now()
    summary = MirrorSummary(new_run_id("S"))
    paths.root.mkdir(parents=True, exist_ok=True)
    with write_lock(paths.lock), write_lock(src.lock):
        history = _audit_rows(paths)
        mirror(src.root, paths.root, summary, checksum=True)
        _keep_audit(paths, history)
        append_run(paths, summary.run_id, "restore", started, {}, summary.to_dict(), "ok")
    return summary


def _fetch_replica(url: str, near: Path) -> Path:
    """The replica at ``url`` downloaded into a new temporary folder beside ``near`` (the caller removes it)."""
    import tempfile

    from lake.maintenance.replicate_objects import pull
    from lake.storage.options import is_object_url

    if not is_object_url(url) or not LakePaths(url).exists():
        return remote.fetch(url, near)
    near.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".lake-restore-", dir=near))
    try:
        pull(LakePaths(url), tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _audit_rows(paths: LakePaths) -> pa.Table | None:
    """The damaged lake's ``runs`` rows, if they can still be read (the audit log outlives a restore)."""
    try:
        files = snapshot_files(paths.table("runs"))
        return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default") if files else None
    except Exception:  # a damaged table: what the replica holds is all we have
        return None


def _keep_audit(paths: LakePaths, history: pa.Table | None) -> None:
    """Append the rows of ``history`` that the restored ``runs`` table lacks."""
    if history is None or not len(history):
        return
    files = snapshot_files(paths.table("runs"))
    present = {r for f in files for r in pq.read_table(f, columns=["run_id"]).column("run_id").to_pylist()}
    missing = history.filter(pc.invert(pc.is_in(history.column("run_id"), value_set=pa.array(sorted(present)))))
    if len(missing):
        append(paths.table("runs"), missing)
        record_table_fixity(paths)
