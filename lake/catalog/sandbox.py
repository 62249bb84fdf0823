"""The read-only SQL surface of a lake: every user query (``lk.sql``, ``lake sql``, later cohorts and a
server) runs through :class:`ReadOnlyConnection`.

Two independent locks, both DuckDB's own (no SQL is parsed here):

1. **File access** (:func:`confine`): the connection may open exactly the Parquet files of the
   snapshot its views read (``allowed_paths``), nothing else: not ``lake.json``, not the key or the
   vault beside it, not another table version, not ``/etc/passwd``, not a glob of any folder. Then
   ``enable_external_access = false`` and ``lock_configuration = true``: no ``SET``/``RESET`` can
   undo it (nor move ``temp_directory``), and no extension can be installed or loaded. A lake in
   object storage is read through Arrow datasets registered on the connection, so DuckDB may open
   no path at all there.
2. **Statement type** (:func:`check_statement`): DuckDB's parser must find exactly one statement,
   of type ``SELECT`` (which covers ``WITH``, ``VALUES``, ``FROM ...``, ``DESCRIBE``, ``SHOW``,
   ``SUMMARIZE``) or ``EXPLAIN [ANALYZE]`` of such a query. The file lock alone is not enough:
   measured with DuckDB 2.0.1, ``COPY ... TO '<an allowed file>' (USE_TMP_FILE false)`` overwrites a
   table file, and ``allowed_paths`` does not tell reading from writing. ``SELECT 1; COPY ...`` is
   refused as a whole before anything runs.

Large sorts and joins still spill, to :data:`lake.catalog.query.SPILL_DIR` (DuckDB's own temporary
files, removed when the query ends; bounded by DuckDB's ``max_temp_directory_size``, 90% of the free
disk by default, which a query cannot change).

The sandbox guards the SQL surface, not the Python process: code that imports ``duckdb`` can open
the files itself. Internal writers (ingest, optimize, verify, forget) use their own connections.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb

from lake.catalog.query import Listing, Params, open_views, relation_arrow
from lake.config import LakePaths
from lake.errors import QueryRefusedError

if TYPE_CHECKING:  # results load pyarrow only when fetched as Arrow (``render`` needs none)
    import pyarrow as pa

#: The in-memory table :meth:`ReadOnlyConnection.render` holds a result in while it counts and prints it.
_RESULT = "_lake_rendered_result"

#: What a user query may be, by DuckDB's own classification.
ALLOWED = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)

ALLOWED_TEXT = (
    "allowed is one query per call (SELECT, WITH, VALUES, FROM, DESCRIBE, SHOW, SUMMARIZE, "
    "or EXPLAIN [ANALYZE] of a query)"
)
EXPORT_HINT = (
    "the lake is read-only: to export a result, use `lake sql --lake LAKE --out FILE.parquet|.csv|.json "
    '"SELECT ..."`, or write the DataFrame that lk.sql() returns'
)


def check_statement(sql: str, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.Statement:
    """The one statement of ``sql`` if it is a query; raises :class:`QueryRefusedError` otherwise.

    A syntax error raises DuckDB's ``ParserException`` as usual. ``con`` only parses (default:
    DuckDB's module-level connection).
    """
    statements = (con or duckdb).extract_statements(sql)
    if len(statements) != 1:
        found = f"{len(statements)} statements in one call, nothing was run" if statements else "an empty query"
        raise QueryRefusedError(f"refused {found}: {ALLOWED_TEXT}; {EXPORT_HINT}")
    statement = statements[0]
    kind = statement.type
    if kind not in ALLOWED:
        raise QueryRefusedError(f"refused a {kind.name} statement: {ALLOWED_TEXT}; {EXPORT_HINT}")
    if kind == duckdb.StatementType.EXPLAIN and not _explains_a_query(statement.query, con):
        raise QueryRefusedError(f"refused an EXPLAIN of a statement that is not a query: {ALLOWED_TEXT}; {EXPORT_HINT}")
    return statement


def _explains_a_query(sql: str, con: duckdb.DuckDBPyConnection | None) -> bool:
    """Whether an ``EXPLAIN`` statement explains a query (``EXPLAIN ANALYZE`` runs what it explains).

    DuckDB's tokenizer finds where the explained statement starts: after ``EXPLAIN``, an optional
    ``ANALYZE`` and an optional ``(option, ...)`` group; DuckDB's parser then classifies it. As
    ``EXPLAIN (SELECT 1)`` and ``EXPLAIN (FORMAT json) SELECT 1`` both start with a parenthesis,
    both readings are tried: accepted when one is a single query and none is anything else.
    """
    found = duckdb.tokenize(sql)
    ends = [start for start, _ in found[1:]] + [len(sql)]
    tokens = [(start, kind, sql[start:end].strip()) for (start, kind), end in zip(found, ends, strict=True)]
    tokens = [t for t in tokens if t[1] != duckdb.token_type.comment]
    words = [(start, text) for start, _, text in tokens]
    i = 1  # words[0] is EXPLAIN
    if i < len(words) and words[i][1].upper() == "ANALYZE":
        i += 1
    starts = [words[i][0]] if i < len(words) else []
    if i < len(words) and words[i][1].startswith("("):
        depth = 0
        for j in range(i, len(words)):
            if tokens[j][1] == duckdb.token_type.operator:
                depth += words[j][1].count("(") - words[j][1].count(")")
            if depth <= 0:
                if j + 1 < len(words):
                    starts.append(words[j + 1][0])
                break
    kinds = []
    for start in starts:
        try:
            kinds.append([s.type for s in (con or duckdb).extract_statements(sql[start:])])
        except duckdb.Error:
            continue  # this reading does not parse
    return any(k == [duckdb.StatementType.SELECT] for k in kinds) and all(
        k == [duckdb.StatementType.SELECT] for k in kinds
    )


def confine(con: duckdb.DuckDBPyConnection, files: Iterable[str]) -> None:
    """Let ``con`` open only ``files`` from now on, and lock its configuration (irreversible)."""
    allowed = sorted(set(files))
    if allowed:
        con.execute("SET allowed_paths = ?", [allowed])
    # a query names the lake's views only, never a Python variable of the process (DuckDB's replacement
    # scans); the Arrow datasets of a lake in object storage are registered by name (lake.catalog.query)
    con.execute("SET python_enable_replacements = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


@contextmanager
def _refusing_file_access() -> Iterator[None]:
    """DuckDB's refusals of a query that passed :func:`check_statement` (a table function that opens
    another file or changes a setting) as :class:`QueryRefusedError`."""
    try:
        yield
    except duckdb.PermissionException as exc:
        detail = str(exc).splitlines()[0].removeprefix("Permission Error: ")
        raise QueryRefusedError(
            f"refused file access ({detail}): a query reads only this lake's tables and views, by their "
            f"names; {EXPORT_HINT}"
        ) from exc
    except duckdb.InvalidInputException as exc:
        if "configuration has been locked" not in str(exc):
            raise
        detail = str(exc).splitlines()[0].removeprefix("Invalid Input Error: ")
        raise QueryRefusedError(f"refused a settings change ({detail}): {ALLOWED_TEXT}; {EXPORT_HINT}") from exc


class ReadOnlyConnection:
    """A DuckDB connection that runs only :func:`check_statement`-approved queries over ``files``.

    Mirrors the part of DuckDB's connection API readers use: ``execute(sql, params)`` returns the
    connection, then ``fetchall()``, ``fetchone()`` or ``description``; ``arrow(sql, params)`` returns
    the result as Arrow.
    Refusals raise :class:`QueryRefusedError` (also a ``PermissionError``); other errors are DuckDB's.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, files: Iterable[str]) -> None:
        confine(con, files)
        self._con = con

    def __repr__(self) -> str:
        return "ReadOnlyConnection()"

    def execute(self, query: str, parameters: Params = None) -> ReadOnlyConnection:
        """Run one query (``?`` or ``$name`` parameters); fetch its rows from ``self`` (``fetchall()``)."""
        statement = check_statement(query, self._con)
        with _refusing_file_access():
            self._con.execute(statement, parameters)
        return self

    def arrow(self, query: str, parameters: Params = None) -> pa.Table:
        """Run one query and return its whole result as Arrow."""
        statement = check_statement(query, self._con)
        with _refusing_file_access():
            return relation_arrow(self._con.sql(statement, params=parameters or None))

    def render(self, query: str, max_rows: int, max_columns: int = 50, max_width: int = 200) -> Rendered:
        """Run one query and render its first ``max_rows`` rows (0: all) and ``max_columns`` columns as
        DuckDB's box table (what ``lake sql`` prints), with the result's row and column counts.

        Needs neither pyarrow nor polars (a fraction of a ``lake sql`` call's start-up). The result is
        held in an in-memory table of this connection while it is counted and printed.
        """
        statement = check_statement(query, self._con)
        with _refusing_file_access():
            relation = self._con.sql(statement)
            if relation is None:
                return Rendered("", 0, 0)
            relation.to_table(_RESULT)
        try:
            result = self._con.table(_RESULT)
            rows = int(self._con.execute(f"SELECT count(*) FROM {_RESULT}").fetchall()[0][0])
            columns = result.columns
            if statement.type == duckdb.StatementType.EXPLAIN:  # the plan as text, not in a box
                plans = result.project(_quote_name(columns[-1])).fetchall()
                return Rendered("\n".join(str(p[0]) for p in plans) + "\n", rows, len(columns))
            shown = result.project(", ".join(_quote_name(c) for c in columns[:max_columns]))
            if max_rows > 0:
                shown = shown.limit(max_rows)
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                shown.show(max_rows=max(min(rows, max_rows) if max_rows > 0 else rows, 1), max_width=max_width)
            return Rendered(text.getvalue(), rows, len(columns))
        finally:
            self._con.execute(f"DROP TABLE IF EXISTS {_RESULT}").fetchall()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._con.fetchall()

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._con.fetchone()

    @property
    def description(self) -> list[Any] | None:
        return self._con.description

    def close(self) -> None:
        self._con.close()


@dataclass(frozen=True)
class Rendered:
    """A query's result rendered as text (:meth:`ReadOnlyConnection.render`)."""

    text: str
    rows: int
    columns: int


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sandboxed_connection(
    paths: LakePaths, threads: int | None = None, listings: dict[str, Listing] | None = None
) -> ReadOnlyConnection:
    """A :class:`ReadOnlyConnection` over the lake's current snapshot (its views and ``dicom_*`` macros),
    or over the table files ``listings`` pins (:class:`lake.catalog.snapshot.Snapshot`)."""
    con, files = open_views(paths, threads, listings)
    return ReadOnlyConnection(con, files)
