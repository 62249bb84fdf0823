"""``audit-phi`` against an adversary: identifiers planted into copies of lake files, in every encoding.

A lake is built from pydicom's test files; copies of its files then get seeded identifiers the
way a bug would leave them (raw, base64 InlineBinary deep in header_json, UTF-16 and latin-1
bytes, Delta log and Parquet statistics, checkpoints, Zarr attributes, names). Each must be found
at the right place with the right equals/contains flag. On the clean lake, common words are not
searched and nothing is reported.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.datadict import keyword_for_tag

from lake.audit import Hit, audit, find_identifiers
from lake.audit.vocabulary import DEFINED_TERMS, FORMAT_WORDS, VENDORS, not_searched_reason
from lake.catalog.optimize import optimize
from lake.cli import main
from lake.ingest import ingest

#: pydicom test files with OFFIS and GE manufacturers, SR content trees, big-endian, RGB, RT.
SUBSET = (
    "CT_small.dcm",
    "MR_small.dcm",
    "ExplVR_BigEnd.dcm",
    "SC_rgb_dcmtk_+eb+cr.dcm",
    "rtplan.dcm",
    "test-SR.dcm",
    "emri_small.dcm",
    "JPEG2000.dcm",
)
COMMON = ["DEFAULT", "OFFIS", "00000", "CT", "HEAD"]
#: sequences a planted element is nested in (Request Attributes, Content, Referenced Series...)
SEQUENCES = ["00400275", "0040A730", "00081115", "00400260", "00081250", "0040A504"]
#: (tag, VR) of the planted leaf: text, person name, private OB, UN, UT
LEAVES = [
    ("00321060", "LO"),
    ("00204000", "LT"),
    ("0040A160", "UT"),
    ("0040A123", "PN"),
    ("00091010", "OB"),
    ("00111001", "UN"),
]
ENCODINGS = ["utf-8", "utf-16-le", "utf-16-be", "latin-1"]


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("audit-demo")
    src = base / "src"
    src.mkdir()
    for name in SUBSET:
        path = get_testdata_file(name, download=False)
        if path:
            shutil.copy(str(path), src / name)
    root = base / "lake"
    ingest(root, [src], key_file=base / "demo.key")
    optimize(root)  # header_index, _lake_ranges.json, a second commit in every Delta log
    return root


@pytest.fixture
def copy(demo_lake: Path, tmp_path: Path) -> Path:
    """A copy of the lake without its pixel chunks (they are not text and are not read)."""
    dest = tmp_path / "lake"
    shutil.copytree(demo_lake, dest, ignore=shutil.ignore_patterns("c"))
    return dest


def _hits(root: Path, identifier: str) -> list[Hit]:
    report = audit(root, [identifier])
    assert report.not_searched == [], report.not_searched
    return [h for h in report.hits if h.identifier == identifier]


def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def _instances(root: Path) -> Path:
    return sorted((root / "tables" / "instances").glob("*.parquet"))[0]


def _set_column(table: pa.Table, name: str, values: list[object], kind: pa.DataType | None = None) -> pa.Table:
    array = pa.array(values, type=kind)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, array)
    return table.append_column(name, array)


# -- on a clean lake: nothing, and the common words are listed as not searched -------------------------
def test_clean_lake_with_common_words_reports_nothing_and_lists_them(
    demo_lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(COMMON) + "\n")
    assert main(["audit-phi", "--lake", str(demo_lake), "--identifiers", str(ids)]) == 0
    out = capsys.readouterr().out
    assert "PHI audit: clean (0 identifiers and 3 patterns checked, 5 identifiers not searched)" in out
    for line, word in enumerate(COMMON, 1):
        assert f": {word} (line {line})" in out and "not searched: too " in out

    assert main(["audit-phi", "--lake", str(demo_lake), "--identifiers", str(ids), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] is True and report["hits"] == []
    assert {(n["identifier"], n["line"]) for n in report["not_searched"]} == {(w, i) for i, w in enumerate(COMMON, 1)}
    assert {n["reason"] for n in report["not_searched"]} <= {"too short", "too common"}


def test_the_clean_lake_holds_the_common_words_so_skipping_them_matters(demo_lake: Path) -> None:
    found = {h.identifier for h in find_identifiers(demo_lake, COMMON, min_length=2)}
    assert {"DEFAULT", "OFFIS", "CT"} <= found  # the strict search (for the lake's own tests) finds them


@given(word=st.sampled_from(sorted(set(DEFINED_TERMS.split()) | set(FORMAT_WORDS.split()) | set(VENDORS.split()))))
def test_vocabulary_words_in_any_case_are_not_searched(word: str) -> None:
    for spelling in (word, word.lower(), word.title()):
        assert not_searched_reason(spelling) is not None, spelling


@given(digits=st.text("0123456789", min_size=1, max_size=5))
def test_short_numbers_are_not_searched(digits: str) -> None:
    assert not_searched_reason(digits) is not None


# -- planted identifiers are found where they are -------------------------------------------------------
def _dicom_leaf(vr: str, payload: str, encoding: str, inline: bool) -> dict[str, object]:
    if inline:
        return {
            "vr": "OB" if vr in ("OB", "UN") else vr,
            "InlineBinary": base64.b64encode(payload.encode(encoding)).decode(),
        }
    if vr == "PN":
        return {"vr": "PN", "Value": [{"Alphabetic": payload}]}
    return {"vr": vr, "Value": [payload]}


def _nested(chain: list[tuple[str, int]], leaf_tag: str, leaf: dict[str, object]) -> tuple[str, dict[str, object]]:
    """The element to add at the top of a header: the leaf inside ``chain`` (tag, item index) of sequences."""
    inner: dict[str, object] = {leaf_tag: leaf}
    for tag, index in reversed(chain):
        items: list[dict[str, object]] = [{} for _ in range(index)] + [inner]
        inner = {tag: {"vr": "SQ", "Value": items}}
    (top,) = inner
    return top, inner[top]  # type: ignore[return-value]


def _paths(chain: list[tuple[str, int]], leaf_tag: str) -> tuple[str, str]:
    tags = ".".join([f"{t}[{i}]" for t, i in chain] + [leaf_tag])
    words = ".".join(
        [f"{keyword_for_tag(int(t, 16))}[{i}]" for t, i in chain] + [keyword_for_tag(int(leaf_tag, 16)) or leaf_tag]
    )
    return tags, words


identifiers = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("QXZJ"),
    st.text("BCDFGHKLMNPRSTVWÄÖÜÉ", min_size=6, max_size=11),
).filter(lambda s: len(set(s)) > 2)


@given(
    identifier=identifiers,
    chain=st.lists(st.tuples(st.sampled_from(SEQUENCES), st.integers(0, 2)), max_size=4),
    leaf=st.sampled_from(LEAVES),
    encoding=st.sampled_from(ENCODINGS),
    inline=st.booleans(),
    wrapped=st.booleans(),
    upper=st.booleans(),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_identifier_at_any_depth_and_encoding_in_header_json_is_found_with_its_tag_path(
    tmp_path: Path,
    demo_lake: Path,
    identifier: str,
    chain: list[tuple[str, int]],
    leaf: tuple[str, str],
    encoding: str,
    inline: bool,
    wrapped: bool,
    upper: bool,
) -> None:
    tag, vr = leaf
    inline = inline or vr in ("OB", "UN")
    payload = (identifier.upper() if upper else identifier.lower()) if not wrapped else f"seen {identifier} at home"
    top, element = _nested(chain, tag, _dicom_leaf(vr, payload, encoding, inline))
    header = json.loads(pq.read_table(_instances(demo_lake), columns=["header_json"]).column(0)[0].as_py())
    header[top] = element
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        root = Path(folder)  # a lake of one copied, seeded file
        (root / "tables" / "instances").mkdir(parents=True)
        pq.write_table(
            pa.table({"header_json": [json.dumps(header)]}), root / "tables" / "instances" / "part-0.parquet"
        )
        found = [h for h in _hits(root, identifier) if h.where == "parquet value"]

    tag_path, keywords = _paths(chain, tag)
    assert found, (tag_path, encoding, inline)
    (hit,) = [h for h in found if h.tag_path == tag_path and h.encoding.split(" > ")[0] in ("InlineBinary", "text")][:1]
    assert hit.table == "instances" and hit.column == "header_json" and hit.keywords == keywords
    assert hit.match == ("contains" if wrapped else "equals")
    if inline:
        assert hit.encoding.startswith("InlineBinary")
        if encoding.startswith("utf-16"):
            assert "utf-16" in hit.encoding or "NUL" in hit.encoding


def test_raw_values_and_parquet_statistics(copy: Path) -> None:
    _rewrite(_instances(copy), lambda t: _set_column(t, "StudyDescription", ["QUIXOTE"] * t.num_rows))
    got = {(h.where, h.table, h.column, h.key, h.match) for h in _hits(copy, "Quixote")}
    assert ("parquet value", "instances", "StudyDescription", None, "equals") in got
    assert ("parquet statistics", "instances", "StudyDescription", "min", "equals") in got
    assert ("parquet statistics", "instances", "StudyDescription", "max", "equals") in got


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_byte_array_columns_and_their_statistics_in_any_encoding(copy: Path, encoding: str) -> None:
    blob = "Seen MÜLLERSON today".encode(encoding)
    _rewrite(_instances(copy), lambda t: _set_column(t, "PatientComments", [blob] * t.num_rows, pa.binary()))
    got = {(h.where, h.column, h.match, h.encoding) for h in _hits(copy, "MÜLLERSON")}
    assert {(w, c, m) for w, c, m, _ in got} >= {
        ("parquet value", "PatientComments", "contains"),
        ("parquet statistics", "PatientComments", "contains"),
    }
    if encoding.startswith("utf-16"):
        assert any(e.startswith("utf-16") or "NUL" in e for *_, e in got), got
    # the transliterated spelling is found too
    assert {h.column for h in _hits(copy, "MÜLLERSÖN")} == set() and {
        h.column for h in _hits(copy, "MUELLERSON")
    } == set()
    _rewrite(
        _instances(copy),
        lambda t: _set_column(t, "PatientComments", ["Dr. MUELLERSON".encode(encoding)] * t.num_rows, pa.binary()),
    )
    assert "PatientComments" in {h.column for h in _hits(copy, "MÜLLERSON")}


def test_delta_log_statistics_and_checkpoints(copy: Path) -> None:
    from deltalake import DeltaTable

    log = copy / "tables" / "instances" / "_delta_log" / "00000000000000000001.json"
    lines = []
    for line in log.read_text().splitlines():
        action = json.loads(line)
        if "add" in action:
            stats = json.loads(action["add"]["stats"])
            stats["minValues"]["StudyDescription"] = "QUIXOTE"
            stats["maxValues"]["StudyDescription"] = "Seen QUIXOTE"
            action["add"]["stats"] = json.dumps(stats)
        lines.append(json.dumps(action))
    log.write_text("\n".join(lines) + "\n")
    got = {(h.path, h.where, h.table, h.column, h.key, h.match) for h in _hits(copy, "quixote")}
    rel = "tables/instances/_delta_log/00000000000000000001.json"
    assert (rel, "delta stats", "instances", "StudyDescription", "minValues", "equals") in got
    assert (rel, "delta stats", "instances", "StudyDescription", "maxValues", "contains") in got

    DeltaTable(str(copy / "tables" / "instances")).create_checkpoint()
    checkpoints = {h.path for h in _hits(copy, "quixote") if h.path.endswith(".checkpoint.parquet")}
    assert checkpoints, "the checkpoint's copy of the statistics is not searched"


def test_zarr_attributes_ranges_fixity_reports_and_names(copy: Path) -> None:
    arrays = sorted((copy / "pixels").glob("*/*/zarr.json"))
    meta = json.loads(arrays[0].read_text())
    meta["attributes"]["lake"]["ImageComments"] = base64.b64encode("Seen QUIXOTE".encode("utf-16")).decode()
    arrays[0].write_text(json.dumps(meta))
    ranges = copy / "tables" / "header_index" / "_lake_ranges.json"
    doc = json.loads(ranges.read_text())
    doc["files"][0]["first"] = "quixote"
    ranges.write_text(json.dumps(doc))
    fixity = copy / "tables" / "runs" / "_lake_fixity.json"
    doc = json.loads(fixity.read_text())
    doc["files"]["tables/runs/QUIXOTE-1.parquet"] = {"sha256": "0" * 64}
    fixity.write_text(json.dumps(doc))
    (copy / "reports" / "notes.txt").write_bytes("Patient Quixote, call 030/1234567".encode("utf-16"))
    arrays[1].parent.parent.rename(arrays[1].parent.parent.with_name("QUIXOTE"))

    got = {(h.path, h.where, h.key, h.match, h.encoding) for h in _hits(copy, "Quixote")}
    zarr = arrays[0].relative_to(copy).as_posix()
    assert any(p == zarr and k == "attributes.lake.ImageComments" and "base64" in e for p, _, k, _, e in got), got
    assert ("tables/header_index/_lake_ranges.json", "json", "files.first", "equals", "text") in got
    # names the lake does not write are shown by position only: the fixity key, the report, the folder
    assert any(p == "tables/runs/_lake_fixity.json" and k.startswith("files.#") for p, _, k, _, _ in got), got
    assert any(p.startswith("reports/#") and e.startswith("utf-16") for p, _, _, _, e in got), got
    assert any(p.startswith("pixels/#") and w == "name" and m == "equals" for p, w, _, m, _ in got), got
    assert not any("QUIXOTE" in str(field).upper() for hit in got for field in hit)
    phones = [h for h in audit(copy).hits if h.identifier == "<phone-like>"]
    assert len(phones) >= 1 and {h.path for h in phones} == {p for p, *_ in got if p.startswith("reports/#")}


def test_latin1_and_binary_files(copy: Path) -> None:
    (copy / "reports" / "dump.bin").write_bytes(b"\x00\x01\xff" + "Herr MÜLLERSON".encode("latin-1") + b"\x00\x02")
    (copy / ".lock").write_bytes("MÜLLERSON".encode("latin-1"))
    got = {(h.path, h.where, h.match) for h in _hits(copy, "Müllerson")}
    assert any(p.startswith("reports/#") and w == "binary" and m == "contains" for p, w, m in got), got
    assert (".lock", "text", "equals") in got


def test_output_never_holds_the_value_around_the_identifier(
    copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "Seen QUIXOTE with his sister Dulcinea on 2019-03-14, call +49 30 1234567"
    _rewrite(_instances(copy), lambda t: _set_column(t, "StudyDescription", [secret] * t.num_rows))
    ids = tmp_path / "ids.txt"
    ids.write_text("quixote\n")
    assert main(["audit-phi", "--lake", str(copy), "--identifiers", str(ids)]) == 1
    assert main(["audit-phi", "--lake", str(copy), "--identifiers", str(ids), "--json"]) == 1
    out = capsys.readouterr().out
    assert "quixote" in out and "<phone-like>" in out
    for word in ("Dulcinea", "sister", "2019-03-14", "1234567", "Seen"):
        assert word not in out
