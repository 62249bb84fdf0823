"""DuckDB over a lake: one view per Delta table (its current snapshot) and the derived views."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import duckdb

from lake import memory
from lake.catalog import series_summary
from lake.catalog.macros import install as install_macros
from lake.catalog.tables import lake_snapshot, lake_table_version
from lake.config import LakePaths
from lake.headers.bulk_uri import STORED_BULK_VIEW
from lake.headers.schema import TableSchema, load_table_schema, table_names
from lake.resources import schema_dir

if TYPE_CHECKING:  # pyarrow loads when a result is fetched as Arrow, not to open the views
    import pyarrow as pa

    from lake.catalog.sandbox import ReadOnlyConnection

VIEWS_DIR = schema_dir("views")  # package data (lake.resources)
_VIEW_NAME = re.compile(r"^--\s*view:\s*(\w+)", re.M)
_VIEW_DESC = re.compile(r"^--\s*description:\s*(.+)$", re.M)
_VIEW_COLUMN = re.compile(r"^--\s*column:\s*(\w+):\s*(.+)$", re.M)


@dataclass(frozen=True)
class ViewDefinition:
    name: str
    description: str
    sql: str
    columns: tuple[tuple[str, str], ...] = ()  # (name, description) from ``-- column: name: text``


@cache
def view_definitions() -> tuple[ViewDefinition, ...]:
    """Derived views from ``schemas/views/NN_name.sql`` in file-name order (later may use earlier)."""
    out = []
    for path in sorted((p for p in VIEWS_DIR.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name):
        text = path.read_text(encoding="utf-8")
        name = _VIEW_NAME.search(text)
        desc = _VIEW_DESC.search(text)
        out.append(
            ViewDefinition(
                name.group(1) if name else path.name.removesuffix(".sql").split("_", 1)[-1],
                desc.group(1) if desc else "",
                text,
                tuple((m.group(1), m.group(2).strip()) for m in _VIEW_COLUMN.finditer(text)),
            )
        )
    return tuple(out)


#: Tables an ingest commits before the ``instances`` rows that make them visible: their views keep
#: the rows of committed instances only (a crash between the commits leaves the others, which the
#: next ingest deletes: :func:`lake.maintenance.orphans.remove_orphan_bulk`). ``_stored_<table>``
#: holds every row of the files, for lookups that start from a committed instance (the semi-join
#: costs a scan of instances' UIDs: 20-30 ms a query at 200,000 instances, against 1.5 ms).
COMMITTED_WITH_INSTANCES = frozenset({"bulk"})
STORED_PREFIX = STORED_BULK_VIEW.removesuffix("bulk")  # "_stored_"
ONLY_COMMITTED = "WHERE SOPInstanceUID IN (SELECT SOPInstanceUID FROM instances)"


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def snapshot_versions(paths: LakePaths) -> dict[str, int | None]:
    names = table_names()
    if paths.is_local:
        return {name: lake_table_version(paths, name) for name in names}
    # one listing per table in object storage: sent at once, they cost about one round trip
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return dict(zip(names, pool.map(lambda name: lake_table_version(paths, name), names), strict=True))


def _select_list(schema: TableSchema, stored: list[str] | None = None) -> str:
    """``*`` with TIME columns (stored as microseconds) presented as DuckDB TIME, and a typed NULL
    for each schema column the table's files do not have yet (a column added to ``schemas/`` after
    they were written: earlier data is never rewritten, and views and queries can name it)."""
    present = set(stored) if stored is not None else {c.name for c in schema.columns}
    times = [c for c in schema.time_columns if c in present]
    select = "*"
    if times:
        replaced = ", ".join(f"TIME '00:00:00' + to_microseconds({c}) AS {c}" for c in times)
        select = f"* REPLACE ({replaced})"
    missing = [c for c in schema.columns if c.name not in present]
    return select + "".join(f", NULL::{c.type} AS {c.name}" for c in missing)


#: Where DuckDB spills large sorts and joins (its default, ./.tmp, would land in the user's folder or a lake).
SPILL_DIR = os.path.join(tempfile.gettempdir(), "lake-duckdb-spill")

#: Query parameters: positional (``?``) or named (``$name``).
Params = list[Any] | dict[str, Any] | None


#: A table's files and stored column names at one version (:func:`listing_at`).
Listing = tuple[list[str], list[str]]


def listing_at(paths: LakePaths, name: str, version: int | None) -> Listing:
    """(absolute Parquet file paths, column names) of table ``name`` at Delta ``version`` (None: no
    table yet, ([], [])), by Delta time travel.

    Raises :class:`~lake.errors.VersionsVacuumedError` when that version is no longer readable:
    ``lake forget`` purged the log history, or ``lake vacuum`` removed some of its files.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    from lake.errors import VersionsVacuumedError

    if version is None:
        return [], []
    hint = (
        "re-run the cohort's SQL on the current tables (lake.open(...).sql or `lake sql`) and save it "
        "again; keep versions readable with `lake vacuum --retention-hours H` longer than cohorts must last"
    )
    try:
        dt = DeltaTable(paths.table_uri(name), version=version, storage_options=paths.storage_options())
    except DeltaError as exc:
        raise VersionsVacuumedError(
            f"version {version} of table {name} is no longer readable (its log history was purged, e.g. by "
            f"`lake forget`, or it never existed); {hint}"
        ) from exc
    files = [uri.removeprefix("file://") for uri in dt.file_uris()]
    missing = len(_missing_files(paths, name, files))
    if missing:
        raise VersionsVacuumedError(
            f"version {version} of table {name} was vacuumed ({missing} of its {len(files)} files are gone); {hint}"
        )
    return files, [f.name for f in dt.schema().fields]


def _missing_files(paths: LakePaths, name: str, files: list[str]) -> list[str]:
    if paths.is_local:
        return [f for f in files if not os.path.exists(f)]
    present = {paths.storage.uri(info.path) for info in paths.storage.list(paths.table_key(name))}
    return [f for f in files if f not in present]


def _object_source(
    con: duckdb.DuckDBPyConnection, paths: LakePaths, name: str, files: list[str], stored: list[str]
) -> str:
    """Register the table's files in object storage as an Arrow dataset on ``con``; its name.

    DuckDB reads it through pyarrow's S3 filesystem (filters and projections pushed down), so it
    needs no extension (httpfs) and opens no file itself: the sandbox allows it no path at all. The
    dataset's schema is every column the Delta log names, typed as the first file stores it (else
    as ``schemas/`` declares it), so files written before a column was added read it as NULL, as
    ``union_by_name`` does for a folder.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    fs, _root = paths.storage.arrow_filesystem()
    keys = [f.removeprefix("s3://") for f in files]
    first = pq.read_schema(keys[0], filesystem=fs)
    declared = load_table_schema(name).arrow_schema
    fields = []
    for column in stored:
        if column in first.names:
            fields.append(first.field(column))
        elif column in declared.names:
            fields.append(declared.field(column))
    dataset = ds.dataset(keys, schema=pa.schema(fields), format="parquet", filesystem=fs)
    registered = f"_lake_arrow_{name}"
    con.register(registered, dataset)
    return registered


def open_views(
    paths: LakePaths,
    threads: int | None = None,
    listings: dict[str, Listing] | None = None,
    use_materialised: bool = True,
) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """An in-memory DuckDB connection with a view per table and derived view, and the files they read.

    ``listings`` pins tables to given files (:func:`listing_at`, a :class:`lake.catalog.snapshot.Snapshot`);
    a table it does not name reads its current snapshot.

    The connection is unrestricted (it can write files and change settings): internal code and
    :func:`lake.catalog.sandbox.sandboxed_connection`, which confines it to the returned files,
    use it. No extension is loaded or installed: the views read the snapshot's Parquet files
    directly. The ``dicom_*`` macros (:mod:`lake.catalog.macros`) reach any attribute in ``header_json``.
    ``use_materialised=False`` makes the ``series`` view ignore ``series_summary`` (optimize rebuilds it so).
    """
    # within the memory budget (lake.memory); DuckDB spills large sorts to ./.tmp by default:
    # never into the user's folder or a lake (it removes its spill files when the query ends)
    config = memory.duckdb_config(SPILL_DIR)
    if threads:
        config["threads"] = int(threads)
    con = duckdb.connect(":memory:", config=config)
    # footers (statistics, bloom filter offsets) are parsed once per connection, not per query
    con.execute("SET parquet_metadata_cache = true")
    install_macros(con)
    read: list[str] = []
    instances: list[str] = []
    committed: list[str] = []
    for name in table_names():
        schema = load_table_schema(name)
        files, stored = listings[name] if listings and name in listings else lake_snapshot(paths, name)
        if name == "instances":
            instances = files
        if name == series_summary.NAME and listings and name in listings:
            # the coverage map describes the table's latest version only: pinned to another, the
            # series view computes every series live (same rows, only slower)
            use_materialised = use_materialised and sorted(files) == sorted(lake_snapshot(paths, name)[0])
        if files:
            if paths.is_local:
                read += files
                file_list = ", ".join(_quote(f) for f in files)
                # Ingest appends files whose columns grow over time (union them by name); a table that
                # optimize writes whole has one schema, and binding it reads one footer, not all of them.
                union = "true" if schema.built_by == "ingest" else "false"
                source = f"read_parquet([{file_list}], union_by_name = {union})"
            else:  # an Arrow dataset: DuckDB opens no file itself (see _object_source)
                source = _object_source(con, paths, name, files, stored)
            select = _select_list(schema, stored)
            if name in COMMITTED_WITH_INSTANCES:
                con.execute(f"CREATE VIEW {STORED_PREFIX}{name} AS SELECT {select} FROM {source}")
                committed.append(f"CREATE VIEW {name} AS SELECT * FROM {STORED_PREFIX}{name} {ONLY_COMMITTED}")
            else:
                con.execute(f"CREATE VIEW {name} AS SELECT {select} FROM {source}")
        else:  # no file yet: every column a typed NULL, and no row
            nulls = ", ".join(f"NULL::{c.type} AS {c.name}" for c in schema.columns)
            con.execute(f"CREATE VIEW {name} AS SELECT {nulls} WHERE false")
            if name in COMMITTED_WITH_INSTANCES:
                con.execute(f"CREATE VIEW {STORED_PREFIX}{name} AS SELECT * FROM {name}")
    for statement in committed:  # they name the instances view
        con.execute(statement)
    # the summary's coverage map is a local file: on object storage the series view computes every
    # series live (the same rows, only slower)
    use_materialised = use_materialised and paths.is_local
    for statement in series_summary.helper_views(paths, instances, use_materialised):
        con.execute(statement)
    for view in view_definitions():
        con.execute(f"CREATE VIEW {view.name} AS {view.sql}")
    return con, read


def connect(paths: LakePaths, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An unrestricted connection with the lake's views, for internal code and benchmarks.

    Users' queries go through :func:`lake.catalog.sandbox.sandboxed_connection` (``Lake.connection``)
    instead, which cannot write or read any other file.
    """
    return open_views(paths, threads)[0]


def fetch_arrow(con: duckdb.DuckDBPyConnection | ReadOnlyConnection, query: str, params: Params = None) -> pa.Table:
    """Run ``query`` on a DuckDB connection or a :class:`~lake.catalog.sandbox.ReadOnlyConnection`
    and return the whole result as Arrow."""
    if isinstance(con, duckdb.DuckDBPyConnection):
        return relation_arrow(con.sql(query, params=params or None))
    return con.arrow(query, params)


def fetch_rows(
    con: duckdb.DuckDBPyConnection | ReadOnlyConnection, query: str, params: Params = None
) -> list[tuple[Any, ...]]:
    """Run ``query`` and fetch every row (leaving no unfinished result on the connection)."""
    return con.execute(query, params or None).fetchall()


def relation_arrow(relation: duckdb.DuckDBPyRelation | None) -> pa.Table:
    """A relation's rows as Arrow (DuckDB 2.x ``to_arrow_table``, 1.x ``fetch_arrow_table``)."""
    import pyarrow as pa

    if relation is None:  # a statement without a result (DDL)
        return pa.table({})
    fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    table: pa.Table = fetch()
    return table
