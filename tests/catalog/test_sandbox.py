"""The SQL surface is read-only and confined to the lake's table files (``lake.catalog.sandbox``).

Every escape is tried through ``lk.sql`` and through ``lk.connection().execute``; afterwards the
lake verifies, the same queries return the same rows, and no file anywhere under the test's folder
(the lake, its key and vault, another lake, the export targets) was created or changed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

import lake
from lake.catalog.query import SPILL_DIR
from lake.catalog.sandbox import ReadOnlyConnection, check_statement, confine
from lake.catalog.tables import snapshot_files
from lake.config import vault_dir
from lake.errors import LakeError, QueryRefusedError
from lake.ingest import ingest
from lake.maintenance.verify import verify
from lake.testing.synthetic import make_cohort


class World:
    """A small lake with its key and vault, a second lake, and a folder outside both."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "lake"
        self.key = base / "lake.key"
        self.other = base / "other"
        self.outside = base / "outside"
        make_cohort(base / "src", n_patients=2, studies_per_patient=1, n_images=3)
        lake.init(self.root, key_file=self.key, burned_in_policy="keep-flagged")
        ingest(self.root, [base / "src"], key_file=self.key)
        lake.init(self.other, key_file=base / "other.key")
        self.outside.mkdir()
        verify(self.root, record=False)  # its lock file exists from here on
        self.vault_logs = sorted((vault_dir(self.key) / "runs").glob("*.jsonl"))
        assert self.vault_logs, "the ingest wrote no vault run log"
        self.table_file = snapshot_files(self.root / "tables" / "instances")[0]
        self.files = self.listing()
        self.rows = self.all_rows(lake.open(self.root))

    def listing(self) -> dict[str, tuple[int, int]]:
        out = {}
        for dirpath, _dirs, files in os.walk(self.base):
            for name in files:
                st = os.lstat(os.path.join(dirpath, name))
                # verify takes the write lock, which rewrites the lock file's pid
                out[os.path.join(dirpath, name)] = (-1, -1) if name == ".lock" else (st.st_size, st.st_mtime_ns)
        return out

    @staticmethod
    def all_rows(lk: lake.Lake) -> dict[str, list[dict[str, Any]]]:
        return {
            name: lk.sql(f"SELECT * FROM {name} ORDER BY ALL").to_dicts()
            for name in ("instances", "rejects", "runs", "studies", "series")
        }

    def fill(self, sql: str) -> str:
        return sql.format(
            lake=self.root,
            key=self.key,
            vault_glob=vault_dir(self.key) / "runs" / "*.jsonl",
            vault_log=self.vault_logs[0],
            table_file=self.table_file,
            tables=self.root / "tables",
            other=self.other,
            outside=self.outside,
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("sandbox"))


ESCAPES = [
    # writes over the lake's own files
    "COPY (SELECT 1 AS x) TO '{table_file}' (FORMAT parquet)",
    "COPY (SELECT 1 AS x) TO '{table_file}' (FORMAT parquet, USE_TMP_FILE false)",
    "COPY (SELECT 1 AS x) TO '{lake}/lake.json'",
    "COPY (SELECT 1 AS x) TO '{tables}/instances/part-new.parquet' (FORMAT parquet)",
    "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{table_file}' (FORMAT parquet, USE_TMP_FILE false)",
    "EXPLAIN (ANALYZE, FORMAT json) COPY (SELECT 1 AS x) TO '{table_file}' (FORMAT parquet, USE_TMP_FILE false)",
    # writes of the lake's rows elsewhere
    "COPY instances TO '{outside}/elsewhere.parquet' (FORMAT parquet)",
    "COPY (SELECT * FROM instances) TO '{outside}/elsewhere.csv'",
    "EXPORT DATABASE '{outside}/export'",
    "ATTACH '{outside}/attached.db' AS a",
    "ATTACH '{lake}/attached.db' AS a",
    "SELECT 1; COPY (SELECT 1 AS x) TO '{outside}/second.csv'; SELECT 2",
    "SELECT 1 AS x; SELECT 2 AS y",
    # reads of the key, the vault, other lakes, the system
    "SELECT * FROM read_text('{key}')",
    "SELECT * FROM read_blob('{key}')",
    "SELECT * FROM read_csv('{key}')",
    "SELECT * FROM read_text('{vault_log}')",
    "SELECT * FROM read_json_auto('{vault_glob}')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_text('{lake}/lake.json')",
    "SELECT * FROM read_json_auto('{lake}/lake.json')",
    "SELECT * FROM read_parquet('{key}')",
    "SELECT * FROM read_text('{other}/lake.json')",
    "SELECT * FROM read_text('{tables}/instances/_delta_log/00000000000000000000.json')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM glob('{lake}/*')",
    "SELECT * FROM glob('{tables}/instances/*')",
    "SELECT * FROM glob('{key}.vault/**')",
    "SELECT * FROM '{vault_log}'",
    "SELECT * FROM '{lake}/lake.json'",
    # extensions and settings
    "INSTALL httpfs",
    "LOAD httpfs",
    "LOAD '{outside}/evil.duckdb_extension'",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SET allowed_paths = ['{key}']",
    "SET lock_configuration = false",
    "RESET lock_configuration",
    "SET temp_directory = '{lake}'",
    "SET VARIABLE dicom_tag_list = []",
    "USE memory",
    "PRAGMA version",
    "PRAGMA enable_profiling",
    "CALL pragma_version()",
    "CHECKPOINT",
    "SELECT * FROM enable_logging(storage = 'file', storage_path = '{outside}/logs')",
    "SELECT * FROM enable_profiling()",
    "SELECT * FROM add_grammar_extension('x')",
    # catalog changes (would break later queries on the cached connection)
    "CREATE TABLE t AS SELECT 1 AS x",
    "CREATE VIEW v AS SELECT 1 AS x",
    "CREATE OR REPLACE VIEW instances AS SELECT 1 AS x",
    "DROP VIEW instances",
    "CREATE MACRO m(a) AS a",
    "DETACH memory",
    "VACUUM",
    "",
]


def check_untouched(world: World) -> None:
    assert verify(world.root, record=False).ok
    assert world.listing() == world.files
    assert world.all_rows(lake.open(world.root)) == world.rows


@pytest.mark.parametrize("template", ESCAPES)
def test_escape_is_refused_and_changes_nothing(world: World, template: str) -> None:
    sql = world.fill(template)
    lk = lake.open(world.root)
    with pytest.raises(QueryRefusedError) as refused:
        lk.sql(sql)
    assert isinstance(refused.value, LakeError) and isinstance(refused.value, PermissionError)
    assert "--out FILE" in str(refused.value)
    assert str(world.key.read_text().strip()) not in str(refused.value)
    with pytest.raises(QueryRefusedError):
        lk.connection().execute(sql)  # the connection itself, not only lk.sql
    assert world.all_rows(lk) == world.rows  # the same (cached) connection still answers
    check_untouched(world)


def test_query_table_function_cannot_smuggle_a_copy(world: World) -> None:
    lk = lake.open(world.root)
    sql = world.fill("SELECT * FROM query('COPY (SELECT 1 AS x) TO ''{table_file}'' (USE_TMP_FILE false)')")
    with pytest.raises((QueryRefusedError, duckdb.ParserException)):
        lk.sql(sql)
    check_untouched(world)


def test_an_older_snapshot_file_is_not_readable(world: World, tmp_path: Path) -> None:
    """After optimize, the files it replaced stay on disk for old readers; a new connection cannot read them
    (nor, after ``forget``, rows that are no longer in the lake)."""
    root = tmp_path / "lk"
    lake.init(root, key_file=tmp_path / "k.key")
    make_cohort(tmp_path / "src", n_patients=2, studies_per_patient=1, n_images=2)
    for patient in sorted((tmp_path / "src").iterdir()):  # two ingests: two files to compact
        ingest(root, [patient], key_file=tmp_path / "k.key")
    before = snapshot_files(root / "tables" / "instances")
    lake.open(root).optimize()
    after = snapshot_files(root / "tables" / "instances")
    assert Path(before[0]).exists() and before[0] not in after
    lk = lake.open(root)
    with pytest.raises(QueryRefusedError, match="refused file access"):
        lk.sql(f"SELECT count(*) FROM read_parquet('{before[0]}')")
    assert lk.sql(f"SELECT count(*) AS n FROM read_parquet('{after[0]}')")["n"][0] == 4


def test_every_table_and_view_answers(world: World) -> None:
    lk = lake.open(world.root)
    counts = {name: lk.sql(f"SELECT count(*) AS n FROM {name}")["n"][0] for name in lk.tables()}
    assert counts["instances"] == 6 and counts["studies"] == 2 and counts["patients"] == 2
    assert set(counts) >= {"instances", "rejects", "runs", "header_index", "series", "studies", "timeline"}


@pytest.mark.parametrize(
    ("sql", "expect"),
    [
        ("WITH s AS (SELECT DISTINCT StudyInstanceUID FROM instances) SELECT count(*) AS n FROM s", 2),
        ("FROM studies SELECT count(*) AS n", 2),
        ("SELECT count(*) AS n FROM (VALUES (1), (2), (3)) t(x)", 3),
        ("SELECT count(*) AS n FROM (DESCRIBE instances) WHERE column_name = 'SOPInstanceUID'", 1),
        ("SELECT count(*) AS n FROM (SUMMARIZE instances) WHERE column_name = 'Modality'", 1),
        ("SELECT count(*) AS n FROM (SHOW TABLES) WHERE name = 'instances'", 1),
        ("SELECT count(*) AS n FROM duckdb_settings() WHERE name = 'lock_configuration' AND value = 'true'", 1),
    ],
)
def test_queries_run(world: World, sql: str, expect: int) -> None:
    assert lake.open(world.root).sql(sql)["n"][0] == expect


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN SELECT * FROM instances",
        "EXPLAIN ANALYZE SELECT count(*) FROM instances",
        "EXPLAIN (FORMAT json) SELECT 1",
        "EXPLAIN (SELECT 1)",
        "/* a comment */ EXPLAIN /* another */ ANALYZE SELECT 1",
        "EXPLAIN ANALYZE -- why\n /* and how */ SELECT 1",
        "EXPLAIN (FORMAT json) /* c */ (SELECT 1)",
        "DESCRIBE instances",
        "SHOW TABLES",
        "SUMMARIZE studies",
    ],
)
def test_explain_describe_show_summarize(world: World, sql: str) -> None:
    assert lake.open(world.root).sql(sql).height >= 1


def test_parameters_and_macros(world: World) -> None:
    lk = lake.open(world.root)
    uid = world.rows["instances"][0]["SOPInstanceUID"]
    assert lk.sql("SELECT count(*) AS n FROM instances WHERE SOPInstanceUID = ?", [uid])["n"][0] == 1
    assert lk.sql("SELECT count(*) AS n FROM instances WHERE SOPInstanceUID = $u", {"u": uid})["n"][0] == 1
    macro = lk.sql(
        "SELECT dicom_value(header_json, 'Modality') AS m, Modality, dicom_has(header_json, 'PixelSpacing') AS h "
        "FROM instances"
    )
    assert macro["m"].to_list() == macro["Modality"].to_list() and all(macro["h"])
    assert lk.sql("SELECT dicom_tag('PatientAge') AS t")["t"][0] == "00101010"


def test_internal_readers_keep_working(world: World) -> None:
    lk = lake.open(world.root)
    info = lk.info()
    assert info["instances"] == 6 and info["patients"] == 2
    row = world.rows["instances"][0]
    assert lk.header(row["SOPInstanceUID"])["00080060"]["Value"] == [row["Modality"]]
    assert lk.pixels(row["SOPInstanceUID"]).shape[0] == 1
    assert lk.series_array(row["SeriesInstanceUID"]).shape[0] == 3
    assert lk.thumbnail(row["SeriesInstanceUID"]).startswith(b"\x89PNG")
    assert lk.table("instances").collect().height == 6 and lk.table("studies").collect().height == 2
    assert isinstance(lk.connection(), ReadOnlyConnection)
    assert lk.connection().execute("SELECT count(*) FROM instances").fetchone() == (6,)
    check_untouched(world)


def test_a_large_sort_runs(world: World) -> None:
    lk = lake.open(world.root)
    out = lk.sql("SELECT i FROM range(2000000) t(i) ORDER BY hash(i), i LIMIT 3 OFFSET 1000000")
    assert out.height == 3
    check_untouched(world)


def test_a_sort_larger_than_memory_spills_in_the_sandbox(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    con = duckdb.connect(":memory:", config={"memory_limit": "64MB", "threads": 1, "temp_directory": str(spill)})
    sandboxed = ReadOnlyConnection(con, [])
    rows = "SELECT md5(i::VARCHAR) || repeat('x', 40) AS h FROM range(1500000) t(i)"  # ~120 MB of strings
    got = sandboxed.execute(f"SELECT h FROM ({rows}) ORDER BY h LIMIT 1 OFFSET 1499990").fetchall()
    assert spill.is_dir()  # DuckDB spilled (and removes the folder when the connection closes)
    assert got == duckdb.connect().execute(f"SELECT h FROM ({rows}) ORDER BY h DESC LIMIT 1 OFFSET 9").fetchall()
    with pytest.raises(QueryRefusedError):
        sandboxed.execute(f"SET temp_directory = '{tmp_path / 'elsewhere'}'")
    with pytest.raises(duckdb.InvalidInputException, match="locked"):
        con.execute(f"SET temp_directory = '{tmp_path / 'elsewhere'}'")  # the lock holds under the wrapper too
    assert con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0] == str(spill)
    sandboxed.close()
    assert not (tmp_path / "elsewhere").exists() and not spill.exists()


def test_lake_connections_spill_outside_the_lake(world: World) -> None:
    con = lake.open(world.root).connection()
    setting = con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    assert setting == SPILL_DIR and not Path(SPILL_DIR).is_relative_to(world.root)


def test_confine_with_no_files_reads_nothing(tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text("a\n1\n")
    con = duckdb.connect()
    confine(con, [])
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"SELECT * FROM read_csv('{tmp_path / 'f.csv'}')")
    assert con.execute("SELECT 42").fetchall() == [(42,)]


@pytest.mark.parametrize(
    ("sql", "ok"),
    [
        ("SELECT 1", True),
        ("  select 1 ;  ", True),
        ("WITH a AS (SELECT 1) SELECT * FROM a", True),
        ("FROM range(3)", True),
        ("EXPLAIN SELECT 1", True),
        ("EXPLAIN ANALYZE SELECT 1", True),
        ("EXPLAIN COPY (SELECT 1) TO 'x.csv'", False),
        ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", False),
        ("EXPLAIN (FORMAT json) COPY (SELECT 1) TO 'x.csv'", False),
        ("SELECT 1; SELECT 2", False),
        ("COPY (SELECT 1) TO 'x.csv'", False),
        ("INSERT INTO t VALUES (1)", False),
        ("UPDATE t SET a = 1", False),
        ("DELETE FROM t", False),
        ("PIVOT (SELECT 1 AS a) ON a", False),
        ("PREPARE p AS SELECT 1", False),
        ("EXECUTE p", False),
        ("BEGIN TRANSACTION", False),
        ("ALTER VIEW instances RENAME TO x", False),
        ("-- only a comment", False),
    ],
)
def test_check_statement_by_duckdb_classification(sql: str, ok: bool) -> None:
    if ok:
        assert check_statement(sql).type in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
    else:
        with pytest.raises(QueryRefusedError):
            check_statement(sql)


def test_a_syntax_error_is_duckdb_s(world: World) -> None:
    with pytest.raises(duckdb.ParserException):
        lake.open(world.root).sql("SELEC 1")


def test_refusal_message_names_the_statement_and_the_way_out() -> None:
    with pytest.raises(QueryRefusedError) as refused:
        check_statement("COPY (SELECT 1) TO 'x.csv'")
    message = str(refused.value)
    assert message.startswith("refused a COPY statement")
    for text in ("SELECT", "WITH", "EXPLAIN", "DESCRIBE", "SUMMARIZE", "SHOW", "lake sql", "--out FILE"):
        assert text in message
    with pytest.raises(QueryRefusedError, match="refused 3 statements in one call, nothing was run"):
        check_statement("SELECT 1; SELECT 2; SELECT 3")


def test_frames_compare(world: World) -> None:
    """The sandbox returns the same rows as an unrestricted connection."""
    from lake.catalog.query import connect, fetch_arrow

    lk = lake.open(world.root)
    free = pl.from_arrow(fetch_arrow(connect(lk.paths), "SELECT * FROM instances ORDER BY SOPInstanceUID"))
    assert isinstance(free, pl.DataFrame)
    assert lk.sql("SELECT * FROM instances ORDER BY SOPInstanceUID").equals(free)
