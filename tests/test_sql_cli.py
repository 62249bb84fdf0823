"""``lake sql``: refusals with a way out, ``--out`` exports, CSV that keeps lists, the truncation notice."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

import lake
from lake.cli import main
from lake.config import lake_home, vault_dir
from lake.ingest import ingest
from lake.testing.synthetic import make_cohort


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("sqlcli")
    make_cohort(base / "src", n_patients=2, studies_per_patient=1, n_images=3)
    root, key = base / "lake", base / "lake.key"
    lake.init(root, key_file=key, burned_in_policy="keep-flagged")
    ingest(root, [base / "src"], key_file=key)
    return root, key


@pytest.fixture
def lk(built: tuple[Path, Path]) -> str:
    return str(built[0])


def sql(capsys: pytest.CaptureFixture[str], lake_path: str, *args: str) -> tuple[int, str, str]:
    code = main(["sql", "--lake", lake_path, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_refused_statement_says_what_is_allowed_and_how_to_export(
    lk: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "x.parquet"
    code, out, err = sql(capsys, lk, f"COPY instances TO '{target}' (FORMAT parquet)")
    assert code == 2 and out == ""
    assert "refused a COPY statement" in err and "--out FILE" in err and "SELECT" in err
    assert "Traceback" not in err and not target.exists()
    code, _, err = sql(capsys, lk, "SELECT * FROM read_csv('/etc/passwd')")
    assert code == 2 and "refused file access" in err and "root:" not in err


def test_csv_keeps_list_and_struct_columns_as_json_text(lk: str, capsys: pytest.CaptureFixture[str]) -> None:
    frame = lake.open(lk).sql("SELECT SOPInstanceUID, PixelSpacing, ImagePositionPatient FROM instances ORDER BY 1")
    code, out, _ = sql(capsys, lk, "SELECT * FROM instances ORDER BY SOPInstanceUID", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["SOPInstanceUID"] for r in rows] == frame["SOPInstanceUID"].to_list()
    assert [json.loads(r["PixelSpacing"]) for r in rows] == frame["PixelSpacing"].to_list()
    assert [json.loads(r["ImagePositionPatient"]) for r in rows] == frame["ImagePositionPatient"].to_list()

    query = (
        "SELECT {'a': 1, 'b': ['x', 'y']} AS s, [[1, 2], [3]] AS nested, NULL::INT[] AS missing, "
        "[]::INT[] AS empty, ['say \"hi\", twice'] AS quoted, '\\x00\\x01'::BLOB AS raw"
    )
    code, out, _ = sql(capsys, lk, query, "--format", "csv")
    assert code == 0
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert json.loads(row["s"]) == {"a": 1, "b": ["x", "y"]}
    assert json.loads(row["nested"]) == [[1, 2], [3]]
    assert row["missing"] == "" and json.loads(row["empty"]) == []
    assert json.loads(row["quoted"]) == ['say "hi", twice']
    assert row["raw"] == "AAE="  # base64 of the bytes 00 01


@pytest.mark.parametrize("view", ["instances", "series", "studies", "patients", "timeline", "runs", "rejects"])
def test_select_star_of_every_view_writes_csv(lk: str, view: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = sql(capsys, lk, f"SELECT * FROM {view}", "--format", "csv")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert len(rows) == 1 + lake.open(lk).sql(f"SELECT count(*) AS n FROM {view}")["n"][0]


def _cells(table: str) -> list[str]:
    """The values of a one-column box table as DuckDB renders it (header and type lines dropped)."""
    lines = [line.strip("│ ") for line in table.splitlines() if line.startswith("│")]
    return lines[2:]


def test_table_output_says_how_many_rows_there_were(lk: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = sql(capsys, lk, "SELECT range AS i FROM range(1234)")
    assert code == 0
    assert "showing the first 200 of 1234 rows" in err and "--out FILE" in err and "--max-rows" in err
    assert _cells(out) == [str(i) for i in range(200)]  # the first 200 rows, every one of them
    code, out, err = sql(capsys, lk, "SELECT range AS i FROM range(1234)", "--max-rows", "5")
    assert "showing the first 5 of 1234 rows" in err and _cells(out) == ["0", "1", "2", "3", "4"]
    code, out, err = sql(capsys, lk, "SELECT range AS i FROM range(1234)", "--max-rows", "0")
    assert code == 0 and err == "" and _cells(out) == [str(i) for i in range(1234)]
    code, out, err = sql(capsys, lk, "SELECT range AS i FROM range(20)")
    assert code == 0 and err == ""
    code, _, err = sql(capsys, lk, "SELECT * FROM instances")
    assert code == 0 and "showing 50 of" in err and "columns" in err


@pytest.mark.parametrize("name", ["r.csv", "r.parquet", "r.pq", "r.json", "r.txt"])
def test_out_writes_every_row_outside_the_lake(
    lk: str, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    query = "SELECT SOPInstanceUID, PixelSpacing, InstanceNumber FROM instances ORDER BY 1"
    expected = lake.open(lk).sql(query)
    target = tmp_path / name
    extra = ["--format", "csv"] if name.endswith(".txt") else []
    code, out, err = sql(capsys, lk, query, "--out", str(target), *extra)
    assert code == 0, err
    assert f"wrote {expected.height} rows to {target}" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left
    if name.endswith((".csv", ".txt")):
        rows = list(csv.DictReader(io.StringIO(target.read_text())))
        assert [r["SOPInstanceUID"] for r in rows] == expected["SOPInstanceUID"].to_list()
        assert [json.loads(r["PixelSpacing"]) for r in rows] == expected["PixelSpacing"].to_list()
    elif name.endswith(".json"):
        assert json.loads(target.read_text()) == expected.to_dicts()
    else:
        assert pl.from_arrow(pq.read_table(target)).equals(expected)  # type: ignore[union-attr]


def test_out_refuses_an_existing_file_unless_forced(
    lk: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "r.csv"
    target.write_text("keep me\n")
    code, _, err = sql(capsys, lk, "SELECT 1 AS x", "--out", str(target))
    assert code == 2 and "exists" in err and "--force" in err and target.read_text() == "keep me\n"
    code, _, _ = sql(capsys, lk, "SELECT 1 AS x", "--out", str(target), "--force")
    assert code == 0 and target.read_text() == "x\n1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_out_refuses_the_lake_the_vault_and_the_keys(
    built: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, key = built
    other = tmp_path / "other"
    lake.init(other, key_file=tmp_path / "other.key")
    (lake_home() / "keys").mkdir(parents=True, exist_ok=True)
    before = {p: p.stat().st_mtime_ns for p in [*root.rglob("*"), *vault_dir(key).rglob("*")] if p.is_file()}
    for target, says in [
        (root / "export.parquet", "inside the lake"),
        (root / "tables" / "instances" / "part-x.parquet", "inside the lake"),
        (root / "lake.json", "inside the lake"),
        (root / "tables" / ".." / ".." / root.name / "x.csv", "inside the lake"),
        (other / "x.csv", "inside the lake"),
        (vault_dir(key) / "runs" / "x.json", "keys or a vault"),
        (vault_dir(key) / "x.csv", "keys or a vault"),
        (lake_home() / "keys" / "x.csv", "keys or a vault"),
    ]:
        code, _, err = sql(capsys, str(root), "SELECT * FROM instances", "--out", str(target), "--force")
        assert code == 2 and says in err, (target, err)
        assert not target.exists() or target.name == "lake.json"
    after = {p: p.stat().st_mtime_ns for p in [*root.rglob("*"), *vault_dir(key).rglob("*")] if p.is_file()}
    assert after == before
    assert lake.open(root).sql("SELECT count(*) AS n FROM instances")["n"][0] == 6


def test_out_through_a_symlink_into_the_lake_is_refused(
    built: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = built
    (tmp_path / "link").symlink_to(root)
    code, _, err = sql(capsys, str(root), "SELECT 1 AS x", "--out", str(tmp_path / "link" / "x.csv"))
    assert code == 2 and "inside the lake" in err and not (root / "x.csv").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--out", "{tmp}/r.txt"], "cannot tell the format"),
        (["--format", "parquet"], "add --out FILE.parquet"),
        (["--out", "{tmp}/r.csv", "--format", "table"], "not table"),
        (["--out", "{tmp}"], "is a directory"),
        (["--out", "{tmp}/no/such/dir/r.csv"], "does not exist"),
    ],
)
def test_bad_output_options_are_refused_before_the_query(
    lk: str, tmp_path: Path, args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = sql(capsys, lk, "SELECT 1 AS x", *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and says in err and out == ""
    assert list(tmp_path.iterdir()) == []


def test_sql_help_names_every_option_and_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sql", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--out FILE", "--format", "--force", "--max-rows N", "default 200", "refused"):
        assert option in text
