"""The :class:`Lake`: create, open, query and read pixels."""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lake.catalog.query import fetch_rows, snapshot_versions, view_definitions
from lake.catalog.sandbox import ReadOnlyConnection
from lake.catalog.snapshot import Snapshot
from lake.config import (
    CorrectionSettings,
    DeidSettings,
    LakeConfig,
    LakePaths,
    default_key_path,
    read_config,
    write_config,
)
from lake.created import CreatedPaths
from lake.deid.policy import PixelPolicy
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, ProfileName, ProfileOption, parse_options, parse_profile_name
from lake.errors import KeyFileError, KeyMismatchError, LakeExistsError, NotInLakeError
from lake.headers.schema import table_names
from lake.keys import LakeKey, generate_key, read_key, write_key

if TYPE_CHECKING:  # zarr, dask and the codecs load when pixels are first read (lake.pixels.api)
    from collections.abc import Mapping

    import dask.array
    import numpy as np
    import polars as pl

    from lake.cohorts.builder import Cohort
    from lake.cohorts.manifest import LoadedCohort
    from lake.pixels.store import PixelStore
    from lake.pixels.volume import Volume


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def init(
    path: str | os.PathLike[str],
    key_file: str | os.PathLike[str] | None = None,
    options: Iterable[str | ProfileOption] | None = None,
    date_offset_days: tuple[int, int] = (30, 1095),
    burned_in_policy: str | PixelPolicy = "mask-or-quarantine",
    keep_crosswalk: bool = False,
    patient_identity: str = "patient_id",
    issuer_aliases: dict[str, str] | str | os.PathLike[str] | None = None,
    on_update: str = "replace",
    profile: str | ProfileName = ProfileName.RESEARCH,
) -> Lake:
    """Create a lake at ``path`` and its key (or adopt an existing key file, to link lakes).

    ``options`` is the complete set of PS3.15 options; None means the research profile
    (``lake.deid.profile.DEFAULT_RESEARCH_OPTIONS``). To add to it, pass
    ``[*DEFAULT_RESEARCH_OPTIONS, "retain_uids"]`` (``lake init --option`` adds, ``--only-options``
    replaces). Every setting is checked before anything is written, and a failure leaves nothing
    behind. Raises :class:`LakeExistsError` if ``path`` already holds a lake, ``LakePathError`` if
    it is a file, :class:`KeyFileError` if the key would sit inside the lake or is a folder,
    ``ConfigError`` for a bad setting.

    ``patient_identity`` is ``"patient_id"`` (PatientID alone) or ``"issuer_qualified"``, with
    ``issuer_aliases`` (``{spelling: domain}`` or the path of an ``issuer,domain`` CSV); it is fixed
    for the lake's life (:mod:`lake.deid.identity`). ``on_update`` (``lake.config.OnUpdate``: replace,
    keep-first, flag) is what an ingest does with a new version of an instance (:mod:`lake.ingest.updates`).

    ``profile`` (:class:`~lake.deid.profile.ProfileName`) is ``"research"`` (the default) or
    ``"pass-through"`` for data already de-identified (:mod:`lake.deid.passthrough`; ``options``
    must then be None or empty); fixed for the lake's life.
    """
    return create_lake(
        path, key_file, options, date_offset_days, burned_in_policy, keep_crosswalk, patient_identity, issuer_aliases,
        on_update, profile,
    )[0]  # fmt: skip


def create_lake(
    path: str | os.PathLike[str],
    key_file: str | os.PathLike[str] | None = None,
    options: Iterable[str | ProfileOption] | None = None,
    date_offset_days: tuple[int, int] = (30, 1095),
    burned_in_policy: str | PixelPolicy = "mask-or-quarantine",
    keep_crosswalk: bool = False,
    patient_identity: str = "patient_id",
    issuer_aliases: dict[str, str] | str | os.PathLike[str] | None = None,
    on_update: str = "replace",
    profile: str | ProfileName = ProfileName.RESEARCH,
) -> tuple[Lake, CreatedPaths]:
    """:func:`init`, also returning what it created (the lake, a new key, the vault to be), so a
    command that fails later can remove exactly that (:meth:`CreatedPaths.remove`)."""
    from lake.config import check_lake_folder, vault_dir
    from lake.deid.identity import identity_settings

    paths = LakePaths(path)
    paths.require_folder("creating a lake (lake init, lake ingest, lake demo)")
    check_lake_folder(paths.root)
    if paths.exists():
        raise LakeExistsError(f"{paths.root} is already a lake; open it with lake.open({str(paths.root)!r})")
    named = parse_profile_name(profile)
    research = named is ProfileName.RESEARCH
    chosen = (DEFAULT_RESEARCH_OPTIONS if research else ()) if options is None else options
    deid = DeidSettings(
        options=sorted(o.value for o in parse_options(chosen)),
        date_offset_days=tuple(date_offset_days),  # type: ignore[arg-type]
        burned_in_policy=str(burned_in_policy),
        keep_crosswalk=keep_crosswalk,
        profile=named.value,
    )
    deid.validate()
    identity = identity_settings(patient_identity, issuer_aliases)
    key_path = Path(key_file) if key_file else None
    if key_path is not None and key_path.is_dir():
        example = key_path / "lake.key"
        raise KeyFileError(f"the key file {key_path} is a folder: give the path of a key file, e.g. {example}")
    key = read_key(key_path) if key_path is not None and key_path.exists() else generate_key()
    config = LakeConfig.new(key.fingerprint, deid, identity)
    config.corrections = CorrectionSettings(str(on_update))
    config.corrections.validate()
    key_path = key_path or default_key_path(config.lake_id)
    if _inside(key_path, paths.root):
        raise KeyFileError(f"the key file {key_path} must not be inside the lake {paths.root}")
    created = CreatedPaths()
    try:
        if not key_path.exists():
            created.will_create(key_path)
            write_key(key, key_path)
        created.will_create(vault_dir(key_path))  # made by the first ingest
        created.will_create(paths.root)
        paths.root.mkdir(parents=True, exist_ok=True)
        for folder in (paths.tables, paths.pixels, paths.reports):
            created.will_create(folder)
            folder.mkdir(exist_ok=True)
        created.will_create(paths.lock)  # made by the first write
        created.will_create(paths.config)
        write_config(paths, config)
    except BaseException:
        created.remove()
        raise
    return Lake(paths.root, key_file=key_path), created


def open(path: str | os.PathLike[str], key_file: str | os.PathLike[str] | None = None) -> Lake:
    """Open an existing lake for reading (the key is only needed to write).

    ``path`` is a folder or ``s3://bucket/prefix`` (endpoint and credentials from the environment:
    ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``..., see :mod:`lake.storage.options`)."""
    return Lake(path, key_file=key_file)


class Lake:
    """A lake in a folder or in object storage. Queries see the tables' current snapshots; ``refresh``
    is automatic. What only works on a folder raises :class:`~lake.errors.FolderLakeOnlyError`."""

    def __init__(self, path: str | os.PathLike[str], key_file: str | os.PathLike[str] | None = None) -> None:
        self.paths = LakePaths(path)
        self.config: LakeConfig = read_config(self.paths)
        self._key_file = Path(key_file) if key_file else None
        self._latest: Snapshot | None = None

    @cached_property
    def pixel_store(self) -> PixelStore:
        from lake.pixels.store import PixelStore

        if not self.paths.is_local:
            from lake.pixels.objects import ObjectPixelStore

            return ObjectPixelStore(self.paths.storage, self.config.pixels.shard_frames, self.config.pixels.codec)
        return PixelStore(self.paths.pixels, self.config.pixels.shard_frames, self.config.pixels.codec)

    def __repr__(self) -> str:
        return f"Lake({self.location!r})"

    @property
    def root(self) -> Path:
        """The lake's folder (:class:`~lake.errors.FolderLakeOnlyError` for a lake in object storage)."""
        return self.paths.root

    @property
    def location(self) -> str:
        """Where the lake is: its folder or ``s3://bucket/prefix``."""
        return self.paths.location

    @property
    def local_root(self) -> Path | None:
        """The lake's folder, or None for a lake in object storage."""
        return self.paths.root if self.paths.is_local else None

    # -- keys ------------------------------------------------------------------------------------
    @property
    def key_path(self) -> Path:
        return self._key_file or default_key_path(self.config.lake_id)

    def key(self) -> LakeKey:
        """Load the key and check it is this lake's; raises :class:`KeyMismatchError` otherwise."""
        try:
            key = read_key(self.key_path)
        except KeyFileError:
            raise
        if key.fingerprint != self.config.key_fingerprint:
            raise KeyMismatchError(
                f"the key in {self.key_path} (fingerprint {key.fingerprint}) is not this lake's key "
                f"(fingerprint {self.config.key_fingerprint}); pass the lake's own --key-file"
            )
        return key

    def save_config(self) -> None:
        write_config(self.paths, self.config)

    # -- queries ---------------------------------------------------------------------------------
    def snapshot(self, versions: Mapping[str, int | None] | None = None) -> Snapshot:
        """Every table pinned to one Delta version (``versions``: table -> version; the others and
        None: latest), with its own connection and pixel lookups (:mod:`lake.catalog.snapshot`).

        Raises :class:`~lake.errors.VersionsVacuumedError` for versions vacuumed or purged.
        """
        return Snapshot(self, versions)

    def latest(self) -> Snapshot:
        """The snapshot of the tables' latest committed versions, re-taken when a table changes."""
        versions = snapshot_versions(self.paths)
        if self._latest is None or versions != self._latest.versions:
            if self._latest is not None:
                self._latest.close()
            self._latest = Snapshot(self, versions)
        return self._latest

    def connection(self) -> ReadOnlyConnection:
        """The read-only connection whose views match the tables' latest committed versions.

        It runs one query per call and opens only the snapshot's table files
        (:mod:`lake.catalog.sandbox`); a refused statement raises :class:`QueryRefusedError`.
        """
        return self.latest().connection()

    def sql(self, query: str, params: list[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        """Run one read-only DuckDB query over the lake's tables and views; returns a polars DataFrame.

        ``params`` fill ``?`` (a list) or ``$name`` (a dict) placeholders. Writes, settings, several
        statements and reads of other files raise :class:`QueryRefusedError` (nothing runs).
        """
        return self.latest().sql(query, params)

    def tables(self) -> list[str]:
        return table_names() + [v.name for v in view_definitions()]

    def table(self, name: str) -> pl.LazyFrame:
        """A lazy polars frame over a table (Parquet scan of its snapshot) or a derived view."""
        if name not in self.tables():
            raise NotInLakeError(f"no table {name!r}; tables: {', '.join(self.tables())}")
        return self.latest().table(name)

    def cohort(self) -> Cohort:
        """A cohort builder over a snapshot of the latest versions (see :mod:`lake.cohorts`)."""
        return self.snapshot().cohort()

    def load_cohort(self, path: str | os.PathLike[str], key_file: str | os.PathLike[str] | None = None) -> LoadedCohort:
        """Re-run a saved cohort manifest against its pinned versions (see :func:`lake.load_cohort`)."""
        from lake.cohorts.manifest import load_cohort

        return load_cohort(path, lake=self, key_file=key_file)

    def header(self, sop_instance_uid: str, bulk: bool = False) -> dict[str, Any]:
        """The whole de-identified header of one instance (DICOM JSON model, pixel data omitted).

        ``bulk=True`` inlines the large binary values of the ``bulk`` table (InlineBinary).
        Raises :class:`NotInLakeError` when absent, :class:`InvalidUIDError` for a malformed UID.
        """
        from lake.catalog.lookup import header

        return header(self, sop_instance_uid, bulk)

    def optimize(self, force: bool = False) -> dict[str, Any]:
        """Compact and sort the tables (see :mod:`lake.catalog.optimize`); per-table file counts."""
        from lake.catalog.optimize import optimize

        return optimize(self.paths.require_folder("lake optimize"), force=force).to_dict()

    # -- pixels ----------------------------------------------------------------------------------
    def _pixel_location(self, sop_instance_uid: str) -> tuple[str, int, int, str]:
        rows = fetch_rows(
            self.connection(),
            "SELECT pixel_array, pixel_frame_start, frame_count, pixel_status FROM instances "
            "WHERE SOPInstanceUID = ? LIMIT 1",
            [sop_instance_uid],
        )
        found = rows[0] if rows else None
        if found is None:
            raise NotInLakeError(f"no instance with SOPInstanceUID {sop_instance_uid} in this lake")
        array, start, count, status = found
        if array is None:
            raise NotInLakeError(f"instance {sop_instance_uid} has no stored pixels (pixel_status {status})")
        return array, int(start), int(count), status

    def pixels(self, sop_instance_uid: str, frame: int | None = None, rgb: bool = False) -> np.ndarray:
        """Stored pixel values (before rescale): (frames, rows, cols[, samples]), or one frame.

        ``rgb=True`` converts colour (RGB, YBR, palette) to RGB; raises ``PixelDataError`` for grey.
        """
        from lake.pixels import api as pixel_api

        return pixel_api.instance_pixels(self, sop_instance_uid, frame, rgb)

    def series_array(self, series_instance_uid: str) -> dask.array.Array:
        """A lazy dask array of the series' stored values, frames in slice order."""
        from lake.pixels import api as pixel_api

        return pixel_api.series_array(self, series_instance_uid)

    def volume(
        self, series_instance_uid: str, stack: int | None = None, strict: bool = False, timepoints: bool = False
    ) -> Volume:
        """The series in patient space (LPS); see :mod:`lake.pixels.volume` (``timepoints=True``: a 4-D read
        of a series whose stacks are time points). Raises ``GeometryError``."""
        from lake.pixels import api as pixel_api

        return pixel_api.volume(self, series_instance_uid, stack=stack, strict=strict, timepoints=timepoints)

    def thumbnail(self, uid: str, max_size: int = 256) -> bytes:
        """PNG bytes of a series' windowed middle slice or an instance's middle frame."""
        from lake.pixels import api as pixel_api

        return pixel_api.thumbnail(self, uid, max_size)

    def montage(self, uid: str, count: int = 16, max_size: int = 128, columns: int | None = None) -> np.ndarray:
        """A uint8 grid image of evenly spaced windowed slices of a series (or frames of an instance)."""
        from lake.pixels import api as pixel_api

        return pixel_api.montage(self, uid, count, max_size, columns)

    # -- summary ---------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Counts of patients, studies, series, instances, rejects, and bytes on disk."""
        con = self.connection()
        counts = fetch_rows(
            con,
            "SELECT count(DISTINCT PatientID), count(DISTINCT StudyInstanceUID), "
            "count(DISTINCT SeriesInstanceUID), count(*), "
            "count(*) FILTER (WHERE pixel_status = 'stored'), coalesce(sum(frame_count), 0) FROM instances",
        )[0]
        rejected = fetch_rows(con, "SELECT count(*) FROM rejects")[0]
        size = _sizes(self.paths)
        return {
            "patients": counts[0],
            "studies": counts[1],
            "series": counts[2],
            "instances": counts[3],
            "instances_with_pixels": counts[4],
            "frames": int(counts[5]),
            "rejected": rejected[0],
            "bytes_on_disk": sum(size.values()),
            "bytes_tables": size["tables"],
            "bytes_pixels": size["pixels"],
            "key_fingerprint": self.config.key_fingerprint,
            "deid_options": list(self.config.deid.options),
        }


def _sizes(paths: LakePaths) -> dict[str, int]:
    """Bytes of the lake's tables, pixels and other files (one listing in object storage)."""
    if paths.is_local:
        size = {"tables": _du(paths.tables), "pixels": _du(paths.pixels), "other": 0}
        size["other"] = _du(paths.root) - size["tables"] - size["pixels"]
        return size
    size = {"tables": 0, "pixels": 0, "other": 0}
    for info in paths.storage.list():
        part = info.path.split("/", 1)[0]
        size[part if part in ("tables", "pixels") else "other"] += info.size
    return size


def _du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total
