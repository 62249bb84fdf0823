"""Every retained attribute reachable from SQL: nested, private, and first seen in a later batch."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

import lake
from lake.catalog.tables import append, snapshot_files, to_arrow
from lake.headers.schema import load_table_schema
from lake.ingest import ingest
from lake.testing.synthetic import PatientSpec, make_instance


def _write(folder: Path, spec: PatientSpec, n: int, with_contrast: bool, day: date) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = (f"1.2.826.0.1.3680043.9.7777.{day:%y%m%d}.{k}" for k in (1, 2, 3))
    for i in range(n):
        ds = make_instance(spec, study, series, f"{study}.{i + 10}", frame, day, i)
        # a safe-listed private element (kept under Retain Safe Private) ...
        block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
        block.add_new(0x9C, "LO", "fse-xl")
        # ... and an attribute this schema never promotes, present only in the later batch
        if with_contrast:
            ds.ContrastBolusAgent = "IOPAMIDOL"
            ds.ContrastBolusVolume = "80"
            ds.ExposureIndex = "412.5"
        ds.save_as(folder / f"{i}.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def two_batch_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    import os

    os.environ["LAKE_HOME"] = str(tmp_path_factory.mktemp("home"))
    src = tmp_path_factory.mktemp("src")
    spec = PatientSpec("DOE^JANE", "MRN990001", "19600101", "ACCX")
    _write(src / "a", spec, 2, with_contrast=False, day=date(2001, 3, 1))
    _write(src / "b", spec, 2, with_contrast=True, day=date(2002, 3, 1))
    root = tmp_path_factory.mktemp("lakes") / "lk"
    ingest(root, [src / "a"], workers=1)
    first_files = snapshot_files(root / "tables" / "instances")
    ingest(root, [src / "b"], workers=1)
    return root, first_files


def test_nested_attribute_in_a_sequence(two_batch_lake: tuple[Path, list[str]]) -> None:
    lk = lake.open(two_batch_lake[0])
    df = lk.sql(
        "SELECT dicom_value(header_json, 'ReferencedImageSequence.ReferencedSOPClassUID') AS v, "
        "dicom_vr(header_json, 'ReferencedImageSequence.ReferencedSOPClassUID') AS vr, SOPClassUID FROM instances"
    )
    assert len(df) == 4
    assert df["v"].to_list() == df["SOPClassUID"].to_list()  # CT Image Storage, kept as a class UID
    assert set(df["vr"]) == {"UI"}


def test_retained_private_element_by_tag(two_batch_lake: tuple[Path, list[str]]) -> None:
    lk = lake.open(two_batch_lake[0])
    header = lk.header(lk.sql("SELECT SOPInstanceUID FROM instances LIMIT 1")[0, 0])
    private = [tag for tag, el in header.items() if tag.startswith("0019") and el.get("Value") == ["fse-xl"]]
    assert len(private) == 1, "the safe-listed private element must be retained"
    tag = private[0]
    spelled = f"({tag[:4]},{tag[4:]})"
    df = lk.sql(
        f"SELECT dicom_value(header_json, '{spelled}') AS a, dicom_value(header_json, '{tag}') AS b FROM instances"
    )
    assert df["a"].to_list() == ["fse-xl"] * 4
    assert df["b"].to_list() == ["fse-xl"] * 4
    # the removed private block (identifiers) is not there at any depth
    assert lk.sql("SELECT count(*) FROM instances WHERE dicom_has(header_json, '00291010')")[0, 0] == 0


def test_attribute_first_seen_in_a_later_batch(two_batch_lake: tuple[Path, list[str]]) -> None:
    root, first_files = two_batch_lake
    lk = lake.open(root)
    df = lk.sql(
        "SELECT StudyDate, dicom_value(header_json, 'ContrastBolusAgent') AS agent, ContrastBolusAgent, "
        "ContrastBolusVolume, contrast_used, ExposureIndex, dicom_number(header_json, 'ExposureIndex') AS ei "
        "FROM instances ORDER BY StudyDate"
    )
    assert df["agent"].to_list() == [None, None, "IOPAMIDOL", "IOPAMIDOL"]
    assert df["ContrastBolusAgent"].to_list() == df["agent"].to_list()
    assert df["ContrastBolusVolume"].to_list() == [None, None, 80.0, 80.0]
    assert df["contrast_used"].to_list() == [False, False, True, True]
    assert df["ei"].to_list() == [None, None, 412.5, 412.5]
    assert df["ExposureIndex"].to_list() == df["ei"].to_list()
    # the first batch's files are still part of the snapshot, untouched
    assert set(first_files) <= set(snapshot_files(root / "tables" / "instances"))


def test_new_column_in_a_later_batch_merges_without_rewriting(tmp_path: Path) -> None:
    """A column the schema gains later appears as NULL for older files (Delta schema merge)."""
    lk = lake.init(tmp_path / "lk")
    schema = load_table_schema("instances")
    table = lk.paths.table("instances")
    row = {"SOPInstanceUID": "2.25.1", "PatientID": "P-1", "Modality": "CT", "header_json": "{}"}
    old = to_arrow([row], schema).drop_columns(["ReconstructionDiameter"])
    append(table, old)
    before = {f: Path(f).read_bytes() for f in snapshot_files(table)}
    append(table, to_arrow([{**row, "SOPInstanceUID": "2.25.2", "ReconstructionDiameter": 350.0}], schema))
    got = lk.sql("SELECT SOPInstanceUID, ReconstructionDiameter FROM instances ORDER BY 1").rows()
    assert got == [("2.25.1", None), ("2.25.2", 350.0)]
    assert all(Path(f).read_bytes() == data for f, data in before.items())
    # compaction merges the old and new file layouts into one file with the full schema
    lk.optimize()
    assert len(snapshot_files(table)) == 1
    assert (
        lake.open(lk.root).sql("SELECT SOPInstanceUID, ReconstructionDiameter FROM instances ORDER BY 1").rows() == got
    )


def test_macros_on_literal_headers() -> None:
    """Item indexes, multi-values, numbers, absent elements; and the path is folded to a constant."""
    import duckdb

    from lake.catalog.macros import install

    con = duckdb.connect()
    install(con)
    header = json.dumps(
        {
            "00080008": {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY"]},
            "00400275": {
                "vr": "SQ",
                "Value": [{"00401001": {"vr": "SH", "Value": ["A"]}}, {"00401001": {"vr": "SH", "Value": ["B"]}}],
            },
            "00180050": {"vr": "DS", "Value": [2.5]},
        },
        separators=(",", ":"),
    )
    q = (
        "SELECT dicom_value(?, 'RequestAttributesSequence.RequestedProcedureID'), "
        "dicom_value(?, 'RequestAttributesSequence[1].RequestedProcedureID'), "
        "dicom_values(?, 'ImageType'), dicom_number(?, 'SliceThickness'), dicom_value(?, 'PatientID'), "
        "dicom_has(?, 'RequestedProcedureID'), dicom_tag('PatientAge'), dicom_tag('(0029, 1010)')"
    )
    assert con.execute(q, [header] * 6).fetchall()[0] == (
        "A",
        "B",
        ["ORIGINAL", "PRIMARY"],
        2.5,
        None,
        True,
        "00101010",
        "00291010",
    )
    con.execute("CREATE TABLE t AS SELECT ? AS h", [header])
    plan = con.execute("EXPLAIN SELECT count(*) FROM t WHERE dicom_value(h, 'ImageType') = 'X'").fetchall()
    assert '$."00080008".Value[0]' in str(plan), "the keyword path must fold to a constant JSON path"
