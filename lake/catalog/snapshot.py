"""One consistent view of a lake: every table pinned to one Delta version, queries and pixels alike.

``lk.snapshot()`` pins every table to its latest committed version; ``lk.snapshot({"instances": 3})``
pins the tables named to those versions (Delta time travel: ``DeltaTable(path, version=v)``) and
the others to their latest. The snapshot owns one sandboxed DuckDB connection
(:mod:`lake.catalog.sandbox`) that may open only the pinned files, so a cohort computation, an
export or a server request sees the same rows from its first query to its last, whatever is
ingested meanwhile. Pixel lookups (:meth:`Snapshot.pixels`, :meth:`~Snapshot.series_array`,
:meth:`~Snapshot.volume`) find their frames through the snapshot's own ``instances`` rows.

Versions that ``lake vacuum`` removed or ``lake forget`` purged raise
:class:`~lake.errors.VersionsVacuumedError` when the snapshot is made, not at the first query.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from lake.catalog.query import Listing, Params, fetch_arrow, fetch_rows, listing_at, snapshot_versions, view_definitions
from lake.catalog.sandbox import ReadOnlyConnection, sandboxed_connection
from lake.config import LakePaths
from lake.errors import NotInLakeError, VersionsVacuumedError
from lake.headers.schema import load_table_schema, table_names

if TYPE_CHECKING:
    import dask.array
    import numpy as np
    import polars as pl

    from lake.cohorts.builder import Cohort
    from lake.core import Lake
    from lake.pixels.store import PixelStore
    from lake.pixels.volume import Volume


class Snapshot:
    """Every table of a lake at one Delta version, behind one read-only DuckDB connection.

    ``versions`` maps table names to Delta versions (None: the table did not exist yet); tables it
    leaves out are pinned to their latest version. Use it as a context manager, or ``close()`` it.
    Raises :class:`NotInLakeError` for an unknown table, :class:`VersionsVacuumedError` for a version
    that is gone or newer than the table.
    """

    def __init__(self, lake: Lake, versions: Mapping[str, int | None] | None = None) -> None:
        self.lake = lake
        asked = dict(versions or {})
        unknown = sorted(set(asked) - set(table_names()))
        if unknown:
            raise NotInLakeError(f"no table {', '.join(unknown)} in a lake; tables: {', '.join(table_names())}")
        latest = snapshot_versions(lake.paths)
        for name, version in asked.items():
            newest = latest[name]
            if version is not None and (newest is None or version > newest):
                raise VersionsVacuumedError(
                    f"table {name} has no version {version} (latest: {newest}): the versions belong to another "
                    "lake, or this lake was restored from an older replica"
                )
        self.versions: dict[str, int | None] = {**latest, **asked}
        self._listings: dict[str, Listing] = {
            name: listing_at(lake.paths, name, version) for name, version in self.versions.items()
        }
        self._con: ReadOnlyConnection | None = sandboxed_connection(lake.paths, listings=self._listings)

    def __repr__(self) -> str:
        pinned = ", ".join(f"{k}={v}" for k, v in self.versions.items())
        return f"Snapshot({self.lake.location!r}, {pinned})"

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    @property
    def paths(self) -> LakePaths:
        return self.lake.paths

    @property
    def pixel_store(self) -> PixelStore:
        return self.lake.pixel_store

    def files(self, table: str) -> list[str]:
        """The Parquet files of ``table`` at the snapshot's version."""
        return list(self._listings[table][0])

    # -- queries -----------------------------------------------------------------------------------
    def connection(self) -> ReadOnlyConnection:
        """The snapshot's read-only connection (see :meth:`lake.core.Lake.connection`)."""
        if self._con is None:
            raise NotInLakeError("this snapshot was closed; take a new one with lk.snapshot()")
        return self._con

    def sql(self, query: str, params: Params = None) -> pl.DataFrame:
        """Run one read-only query over the snapshot's tables and views; a polars DataFrame."""
        import polars as pl

        result = pl.from_arrow(fetch_arrow(self.connection(), query, params))
        assert isinstance(result, pl.DataFrame)
        return result

    def tables(self) -> list[str]:
        return table_names() + [v.name for v in view_definitions()]

    def table(self, name: str) -> pl.LazyFrame:
        """A lazy polars frame over a table (a Parquet scan of its pinned files) or a derived view."""
        import polars as pl

        if name in table_names():
            files = self.files(name)
            if files:
                options = None if self.paths.is_local else polars_storage_options(self.paths)
                frame = pl.scan_parquet(files, missing_columns="insert", storage_options=options)
                times = load_table_schema(name).time_columns
                return frame.with_columns([(pl.col(c) * 1000).cast(pl.Time) for c in times]) if times else frame
            return self.sql(f"SELECT * FROM {name}").lazy()
        if name in {v.name for v in view_definitions()}:
            return self.sql(f"SELECT * FROM {name}").lazy()
        raise NotInLakeError(f"no table {name!r}; tables: {', '.join(self.tables())}")

    def tables_read(self, query: str) -> list[str]:
        """The tables ``query`` reads, directly or through the derived views (sorted).

        By DuckDB's tokenizer, not a binder: every identifier that names a table or view counts,
        so the answer may name a table too many, never one too few.
        """
        views = {v.name: v.sql for v in view_definitions()}
        found: set[str] = set()
        pending = [query]
        seen_views: set[str] = set()
        while pending:
            for name in _identifiers(pending.pop()):
                if name in table_names():
                    found.add(name)
                elif name in views and name not in seen_views:
                    seen_views.add(name)
                    pending.append(views[name])
        return sorted(found)

    # -- cohorts -----------------------------------------------------------------------------------
    def cohort(self) -> Cohort:
        """A cohort builder reading this snapshot (see :mod:`lake.cohorts`)."""
        from lake.cohorts.builder import Cohort

        return Cohort(self)

    # -- pixels ------------------------------------------------------------------------------------
    def _as_lake(self) -> Lake:
        # lake.pixels.api reads through ``connection()``, ``paths`` and ``pixel_store``, which a
        # snapshot offers pinned: its frame lookups then use the snapshot's instances rows
        return cast("Lake", self)

    def _pixel_location(self, sop_instance_uid: str) -> tuple[str, int, int, str]:
        rows = fetch_rows(
            self.connection(),
            "SELECT pixel_array, pixel_frame_start, frame_count, pixel_status FROM instances "
            "WHERE SOPInstanceUID = ? LIMIT 1",
            [sop_instance_uid],
        )
        if not rows:
            raise NotInLakeError(f"no instance with SOPInstanceUID {sop_instance_uid} in this snapshot")
        array, start, count, status = rows[0]
        if array is None:
            raise NotInLakeError(f"instance {sop_instance_uid} has no stored pixels (pixel_status {status})")
        return array, int(start), int(count), status

    def pixels(self, sop_instance_uid: str, frame: int | None = None, rgb: bool = False) -> np.ndarray:
        """Stored pixel values of an instance of the snapshot (see :meth:`lake.core.Lake.pixels`)."""
        from lake.pixels import api as pixel_api

        return pixel_api.instance_pixels(self._as_lake(), sop_instance_uid, frame, rgb)

    def series_array(self, series_instance_uid: str) -> dask.array.Array:
        """A lazy dask array of a series of the snapshot, frames in slice order."""
        from lake.pixels import api as pixel_api

        return pixel_api.series_array(self._as_lake(), series_instance_uid)

    def volume(
        self, series_instance_uid: str, stack: int | None = None, strict: bool = False, timepoints: bool = False
    ) -> Volume:
        """A series of the snapshot in patient space (see :mod:`lake.pixels.volume`)."""
        from lake.pixels import api as pixel_api

        return pixel_api.volume(self._as_lake(), series_instance_uid, stack=stack, strict=strict, timepoints=timepoints)


def polars_storage_options(paths: LakePaths) -> dict[str, str]:
    """polars' ``storage_options`` for the lake's object store (the Rust ``object_store`` keys)."""
    from lake.storage import ObjectStorage

    storage = paths.storage
    assert isinstance(storage, ObjectStorage)
    options = storage.settings.object_store_config()
    if storage.settings.allow_http:
        options["aws_allow_http"] = "true"
    return options


def _identifiers(sql: str) -> set[str]:
    import duckdb

    found = duckdb.tokenize(sql)
    ends = [start for start, _ in found[1:]] + [len(sql)]
    out = set()
    for (start, kind), end in zip(found, ends, strict=True):
        if kind == duckdb.token_type.identifier:
            out.add(sql[start:end].strip().strip('"').split(".")[-1])
    return out
