"""Reproducible cohorts: a manifest pins a query to table versions; loading re-runs and checks it.

``cohort.save(PATH)`` (or :func:`save_query`, ``lake cohort save``) writes JSON with the query,
the Delta version of every table it reads (directly or through views), the lake id, the key
fingerprint (never the key), counts, the content hash of the result (:mod:`lake.cohorts.hashing`)
and each row's digest under a digest of its patient. :func:`load_cohort` re-runs the query on a
snapshot of exactly those versions and checks the rows against the digests:

- the same rows after any later ingest (time travel reads the pinned files only);
- :class:`~lake.errors.LakeMismatchError` for another lake, :class:`~lake.errors.KeyMismatchError`
  for another key, :class:`~lake.errors.VersionsVacuumedError` when ``lake vacuum`` removed the
  pinned versions, :class:`~lake.errors.CohortError` when the rows differ;
- patients withdrawn with ``lake forget`` (the vault's list beside the key) are never returned: their
  rows are dropped, :attr:`LoadedCohort.withdrawn` counts them (a number, never who), and the check
  is made on the remaining rows.

A forget rewrites every table and purges its history, so the pinned versions cannot be read after
one. When a forget finished after the manifest was saved (the ``runs`` table says so), loading runs
the query on the current versions instead and keeps the rows whose digests the manifest holds: it
succeeds when every saved row of the remaining members is found (then ``pinned`` is False) and
raises :class:`~lake.errors.CohortError` otherwise (rows that later ingests changed cannot be
told apart from the saved ones). Without a forget, vacuumed versions are an error: results are never
silently re-derived from other data.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lake import __version__
from lake.cohorts.hashing import MEMBER_COLUMN, content_hash, digests, member_digest
from lake.errors import CohortError, KeyMismatchError, LakeMismatchError, VersionsVacuumedError

if TYPE_CHECKING:
    import polars as pl

    from lake.catalog.snapshot import Snapshot
    from lake.core import Lake

FORMAT = "lake-cohort/1"


@dataclass(frozen=True)
class Manifest:
    """What a saved cohort file holds (see the module's documentation)."""

    sql: str
    versions: dict[str, int | None]
    lake_id: str
    key_fingerprint: str
    lake: str
    saved_at: str
    counts: dict[str, int]
    columns: list[str]
    content_hash: str
    members: dict[str, list[str]]
    lake_version: str = __version__
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read and check a manifest; raises :class:`CohortError` when it is not one or was altered."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CohortError(f"no cohort manifest at {path}: save one with cohort.save(PATH) first") from None
        except (OSError, ValueError) as exc:
            raise CohortError(f"{path} is not a cohort manifest (unreadable JSON: {type(exc).__name__})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CohortError(f"{path} is not a cohort manifest (format {FORMAT} expected)")
        try:
            manifest = cls(**data)
        except TypeError:
            raise CohortError(f"{path} is not a complete {FORMAT} manifest (fields missing or unknown)") from None
        if content_hash(d for ds in manifest.members.values() for d in ds) != manifest.content_hash:
            raise CohortError(f"the row digests in {path} do not give its content hash: the manifest was altered")
        return manifest


@dataclass(frozen=True)
class LoadedCohort:
    """A saved cohort re-run: its rows, and how they were obtained."""

    manifest: Manifest
    frame: pl.DataFrame
    withdrawn: int  # members (patients) of the saved cohort withdrawn since; never who
    pinned: bool  # True: run at the manifest's versions; False: matched row by row after a forget

    def note(self) -> str | None:
        """A sentence for the user when members were withdrawn or the versions were re-read, else None."""
        parts = []
        if self.withdrawn:
            s = "s were" if self.withdrawn != 1 else " was"
            parts.append(f"{self.withdrawn} member{s} withdrawn since the cohort was saved; their rows are left out")
        if not self.pinned:
            parts.append(
                "the pinned versions were purged by `lake forget`; the saved rows were found in the current tables"
            )
        return "; ".join(parts) or None


def save_query(snapshot: Snapshot, sql: str, path: str | os.PathLike[str], force: bool = False) -> Manifest:
    """Run ``sql`` (one read-only query with a ``PatientID`` column) on ``snapshot`` and write its
    manifest to ``path`` atomically. Raises :class:`CohortError` without a PatientID column, or
    when ``path`` exists (unless ``force``) or lies inside the lake."""
    target = _target(Path(path), snapshot.lake.local_root, force)
    frame = snapshot.sql(sql)
    if MEMBER_COLUMN not in frame.columns:
        raise CohortError(
            f"a saved cohort needs a {MEMBER_COLUMN} column (withdrawn patients are dropped by it): "
            f"add {MEMBER_COLUMN} to the SELECT list"
        )
    members: dict[str, list[str]] = defaultdict(list)
    for member, row in digests(frame):
        members[member].append(row)
    counts = {"rows": frame.height, "patients": frame[MEMBER_COLUMN].n_unique()}
    for column, name in (("StudyInstanceUID", "studies"), ("SeriesInstanceUID", "series")):
        if column in frame.columns:
            counts[name] = frame[column].n_unique()
    config = snapshot.lake.config
    manifest = Manifest(
        sql=sql,
        versions={t: snapshot.versions[t] for t in snapshot.tables_read(sql)},
        lake_id=config.lake_id,
        key_fingerprint=config.key_fingerprint,
        lake=snapshot.lake.location,
        saved_at=_utc_now().isoformat(),
        counts=counts,
        columns=list(frame.columns),
        content_hash=content_hash(d for ds in members.values() for d in ds),
        members={m: sorted(ds) for m, ds in sorted(members.items())},
    )
    _write(target, manifest.to_json(), force)
    return manifest


def load_cohort(
    path: str | os.PathLike[str], lake: Lake | str | os.PathLike[str] | None = None, key_file: Any = None
) -> LoadedCohort:
    """Re-run the cohort saved at ``path`` against its pinned versions (see the module's documentation).

    ``lake`` is a :class:`Lake` or its folder (default: the folder the manifest was saved from);
    ``key_file`` the lake's key, whose vault lists withdrawn patients (default: the lake's key).
    """
    from lake.catalog.query import fetch_rows
    from lake.core import Lake
    from lake.withdrawals import load_withdrawn

    manifest = Manifest.read(path)
    lk = lake if isinstance(lake, Lake) else Lake(lake if lake is not None else manifest.lake, key_file=key_file)
    if lk.config.lake_id != manifest.lake_id:
        raise LakeMismatchError(
            f"the cohort {path} was saved from lake {manifest.lake_id}, but {lk.location} is lake {lk.config.lake_id}: "
            "load it with the lake it was saved from (lake.load_cohort(PATH, lake=...), `lake cohort show --lake`)"
        )
    if lk.config.key_fingerprint != manifest.key_fingerprint:
        raise KeyMismatchError(
            f"the cohort {path} was saved when the lake's key had fingerprint {manifest.key_fingerprint}; the lake's "
            f"key now has {lk.config.key_fingerprint}: its pseudonyms differ, so the cohort cannot be re-run"
        )
    lk.key()  # the vault (withdrawals) beside the key must be this lake's: KeyFileError, KeyMismatchError
    gone = {member_digest(p) for p in load_withdrawn(lk.key_path)} & set(manifest.members)
    expected = Counter(d for m, ds in manifest.members.items() if m not in gone for d in ds)
    pinned = True
    try:
        snapshot = lk.snapshot(manifest.versions)
    except VersionsVacuumedError:
        saved = datetime.fromisoformat(manifest.saved_at)
        forgets = fetch_rows(
            lk.connection(),
            "SELECT count(*) FROM runs WHERE operation = 'forget' AND outcome = 'ok' AND finished_at >= ?",
            [saved],
        )[0][0]
        if not forgets:
            raise
        snapshot, pinned = lk.snapshot(), False
    with snapshot:
        frame = snapshot.sql(manifest.sql)
    if frame.columns != manifest.columns:
        raise CohortError(
            f"re-running the cohort {path} gives the columns {frame.columns}, not the saved {manifest.columns}"
        )
    wanted = Counter(expected)
    keep = []
    for member, row in digests(frame):
        ok = member not in gone and (pinned or wanted[row] > 0)
        if ok and not pinned:
            wanted[row] -= 1
        keep.append(ok)
    import polars as pl

    frame = frame.filter(pl.Series(keep, dtype=pl.Boolean)) if keep else frame
    got = Counter(row for _, row in digests(frame))
    if got != expected:
        missing, extra = sum((expected - got).values()), sum((got - expected).values())
        how = "at the pinned versions" if pinned else "in the current tables (the pinned versions were purged)"
        raise CohortError(
            f"re-running the cohort {path} {how} does not give the saved rows: {missing} saved rows missing, "
            f"{extra} rows not in the manifest; the content hash differs, so the cohort cannot be reproduced"
        )
    return LoadedCohort(manifest, frame, len(gone), pinned)


def _utc_now() -> datetime:
    from lake.runs import utc_now

    return utc_now()


def _target(path: Path, lake_root: Path | None, force: bool) -> Path:
    target = Path(os.path.realpath(path))
    root = Path(os.path.realpath(lake_root)) if lake_root is not None else None  # None: in object storage
    if root is not None and (target == root or root in target.parents):
        raise CohortError(f"{path} is inside the lake {lake_root}: save cohort manifests outside the lake")
    if target.is_dir():
        raise CohortError(f"{path} is a folder: name a file such as {path / 'cohort.json'}")
    if not target.parent.is_dir():
        raise CohortError(f"the folder {target.parent} does not exist: create it first")
    if target.exists() and not force:
        raise CohortError(f"{path} exists: choose another name, or pass force=True (`--force`) to replace it")
    return target


def _write(target: Path, text: str, force: bool) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise CohortError(f"{target} exists: choose another name, or pass force=True") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
