"""``lake audit-phi``: every file decoded, known identifiers and PHI patterns found, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lake.audit import PHI_PATTERNS, audit_lake
from lake.audit.patterns import pattern_matches
from lake.cli import main
from lake.ingest import ingest
from lake.testing.synthetic import make_cohort


@pytest.fixture(scope="module")
def clean_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    base = tmp_path_factory.mktemp("audit")
    src = base / "src"
    specs = make_cohort(src, n_patients=2, studies_per_patient=1, n_images=2)
    root = base / "lake"
    ingest(root, [src], key_file=base / "lake.key")  # a module fixture runs before LAKE_HOME is set
    return root, [i for s in specs for i in s.identifiers()]


def test_clean_lake_exits_0(clean_lake: tuple[Path, list[str]], tmp_path: Path, capsys) -> None:
    root, identifiers = clean_lake
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(identifiers) + "\n\n")
    assert main(["audit-phi", "--lake", str(root), "--identifiers", str(ids)]) == 0
    assert "clean" in capsys.readouterr().out
    assert main(["audit-phi", "--lake", str(root)]) == 0  # patterns only


def test_a_hit_exits_1_naming_the_place_and_only_the_identifier(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    make_cohort(src, n_patients=1, studies_per_patient=1, n_images=1)
    root = tmp_path / "lake"
    ingest(root, [src])
    # plant PHI the way a bug would: in a report, and in a file name
    (root / "reports" / "note.json").write_text(json.dumps({"x": "seen Quixote today, call (555) 010-4477"}))
    (root / "reports" / "quixote.txt").write_text("nothing")
    ids = tmp_path / "ids.txt"
    ids.write_text("quixote\n")
    capsys.readouterr()
    assert main(["audit-phi", "--lake", str(root), "--identifiers", str(ids)]) == 1
    out = capsys.readouterr().out
    # names the lake does not write are shown by position (reports/#1: the second entry), never spelled out
    assert "reports/#1: json, key x: contains quixote (line 1)" in out
    assert "reports/#2: name: equals quixote (line 1)" in out
    assert "reports/#1: json, key x: contains <phone-like>" in out
    assert "note.json" not in out
    assert "today" not in out and "010-4477" not in out  # no more PHI than the identifier itself

    assert main(["audit-phi", "--lake", str(root), "--identifiers", str(ids), "--json"]) == 1
    out = capsys.readouterr().out
    report = json.loads(out)
    assert report["clean"] is False and report["identifiers_searched"] == 1
    hit = next(h for h in report["hits"] if h["identifier"] == "quixote" and h["where"] == "json")
    assert hit == {
        "path": "reports/#1",
        "where": "json",
        "identifier": "quixote",
        "match": "contains",
        "key": "x",
        "encoding": "text",
        "line": 1,
        "count": 1,
    }
    assert "today" not in out and "010-4477" not in out


def test_parquet_values_and_statistics_are_decoded(clean_lake: tuple[Path, list[str]], tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, _ = clean_lake
    leak = root / "tables" / "instances" / "leak.parquet"
    pq.write_table(pa.table({"PatientComments": ["jane.doe@example.org", "ssn 123-45-6789"]}), leak)
    try:
        hits = audit_lake(root, ["Jane.Doe"])
        wheres = {
            (h.where, h.table, h.column, h.identifier, h.match) for h in hits if h.path.startswith("tables/instances/#")
        }
        assert ("parquet value", "instances", "PatientComments", "Jane.Doe", "contains") in wheres
        assert ("parquet statistics", "instances", "PatientComments", "Jane.Doe", "contains") in wheres
        assert ("parquet value", "instances", "PatientComments", "<email-like>", "equals") in wheres
        assert ("parquet value", "instances", "PatientComments", "<ssn-like>", "contains") in wheres
    finally:
        leak.unlink()


def test_patterns_do_not_fire_on_what_a_lake_legitimately_holds() -> None:
    legit = (
        "2.25.161952731844278522754435231967292464486 1.2.840.10008.5.1.4.1.1.2 2024-01-05 19870601 "
        "P-3F9A1C0B7E2D4A61 0.5\\0.5 -123.4 512 R20261128T004101-a1b2c3 120.0 5.0 1987-06-01T12:00:00"
    )
    for name, pattern in PHI_PATTERNS:
        assert not pattern.search(legit), name


def test_missing_lake_is_an_error(tmp_path: Path) -> None:
    assert main(["audit-phi", "--lake", str(tmp_path / "none")]) == 2


@pytest.mark.parametrize(
    "phone", ["555 0199", "555-0199", "+49 30 1234567", "030/1234567", "(555) 010-0199", "07700 900123"]
)
def test_national_phone_formats_are_found(phone: str) -> None:
    (name, pattern) = next(p for p in PHI_PATTERNS if p[0] == "phone-like")
    assert list(pattern_matches(f"call {phone} today", name, pattern)), phone


@pytest.mark.parametrize(
    "legit",
    ["1.2.840.10008.5.1.4.1.1.2", "2026-12-01T22:35:52.123+00:00", "R20261201T223552-106833", "1.0.3.37", "0.5\\0.5"],
)
def test_phone_patterns_skip_the_lakes_own_values(legit: str) -> None:
    assert not any(list(pattern_matches(legit, n, p)) for n, p in PHI_PATTERNS), legit


def test_a_short_identifier_inside_a_random_file_name_is_no_hit_but_a_whole_uuid_is() -> None:
    from lake.audit import Identifier, _Matcher

    uuid = "c1871ab3-58cc-4710-abcd-af8996832ad1"
    matcher = _Matcher([Identifier("abcd"), Identifier(uuid)], ())
    assert [found for found, _line, _how in matcher.find("part-00000-c1871ab3-58cc-4710-abcd-af8996832ad2-c000")] == []
    assert {found for found, _line, _how in matcher.find(f"part-00000-{uuid}-c000", is_name=True)} == {uuid}
    assert {found for found, _line, _how in matcher.find("patient abcd was here")} == {"abcd"}
