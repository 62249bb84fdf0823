"""Round trip: a teaching set exported from a lake, ingested into a new ``pass-through`` lake (made
for already de-identified data) gives the same header rows and bit-identical pixels; the
pass-through profile accepts only files with the de-identification marks, rejects text with PHI
patterns (never showing the value), and a lake's profile cannot be changed."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence

import lake
from lake.audit import audit, find_identifiers
from lake.cli import main
from lake.deid.passthrough import REASONS, PassThrough
from lake.errors import ConfigError, LakeExistsError, RecipeError, RejectedInput
from lake.export import export_teaching
from lake.ingest import IngestSummary, ingest
from lake.keys import generate_key
from tests.export.conftest import ExportLake

ALL_STUDIES = "SELECT DISTINCT StudyInstanceUID FROM instances ORDER BY StudyInstanceUID"
#: columns that describe the ingest, not the instance: which run, when, and the keyed reference to
#: the source file (a hash keyed with the lake's own key, of another file: the exported one)
#: The ingest's own columns; an array's name includes its files' source refs (``pixel_sha256`` is
#: compared).
INGEST_COLUMNS = frozenset(
    {"ingest_run", "ingested_at", "source_ref", "source_bytes", "pixel_array", "pixel_frame_start"}
)
NEW_UID = "2.25.{}"


@dataclass
class RoundTrip:
    out: Path
    root: Path
    key_file: Path
    summary: IngestSummary

    def open(self) -> lake.Lake:
        return lake.open(self.root, key_file=self.key_file)


@pytest.fixture(scope="module")
def round_trip(export_lake: ExportLake, tmp_path_factory: pytest.TempPathFactory) -> RoundTrip:
    base = tmp_path_factory.mktemp("round-trip")
    out = base / "set"
    export_teaching(export_lake.open(), out, sql=ALL_STUDIES)
    key_file = base / "keys" / "pass-through.key"
    lake.init(base / "lake", key_file=key_file, profile="pass-through")
    # two workers: the worker processes build the pass-through profile from the lake's settings
    summary = ingest(base / "lake", [out], key_file=key_file, workers=2)
    return RoundTrip(out, base / "lake", key_file, summary)


def _exported_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("IM*") if p.is_file())


def _rows(lk: lake.Lake) -> dict[str, dict[str, object]]:
    return {str(r["SOPInstanceUID"]): r for r in lk.sql("SELECT * FROM instances").to_dicts()}


def _passthrough_lake(base: Path) -> tuple[Path, Path]:
    root, key_file = base / "lake", base / "keys" / "k.key"
    lake.init(root, key_file=key_file, profile="pass-through")
    return root, key_file


def _one_exported(round_trip: RoundTrip) -> Dataset:
    return dcmread(_exported_files(round_trip.out)[0])


def _renamed(ds: Dataset, n: int) -> Dataset:
    """The dataset as another instance (a new SOP Instance UID), so that it is not a duplicate."""
    uid = NEW_UID.format(10**20 + n)
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    return ds


def _lake_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


# -- the round trip --------------------------------------------------------------------------------
def test_the_profile_is_recorded_in_lake_json(round_trip: RoundTrip) -> None:
    deid = json.loads((round_trip.root / "lake.json").read_text())["deid"]
    assert deid["profile"] == "pass-through" and deid["options"] == []
    params = [json.loads(p) for p in round_trip.open().sql("SELECT parameters FROM runs")["parameters"]]
    assert [p["profile"] for p in params] == ["pass-through"]


def test_every_exported_instance_comes_back_and_only_the_other_files_are_rejected(
    export_lake: ExportLake, round_trip: RoundTrip
) -> None:
    source = _rows(export_lake.open())
    others = [p for p in round_trip.out.rglob("*") if p.is_file() and not p.name.startswith("IM")]
    s = round_trip.summary
    assert s.ingested == len(source) == len(_exported_files(round_trip.out)) == 9
    # the DICOMDIR, the previews, thumbnails, index.html and manifest.json: not instances
    assert dict(s.reject_reasons) == {"dicomdir_not_an_instance": 1, "not_dicom": len(others) - 1}
    assert s.pixel_status == {"stored": 9}


def test_the_header_rows_are_the_same(export_lake: ExportLake, round_trip: RoundTrip) -> None:
    """Every column but the ingest's own is equal. ``header_json`` is the same DICOM JSON model,
    compared parsed: its text lists the de-identification marks last in the source lake (the
    research engine adds them after its walk) and in tag order after the round trip.
    ``TransferSyntaxUID`` is equal here because every instance of the export lake was stored
    from an uncompressed file; a compressed source would come back as Explicit VR Little Endian,
    the syntax the export writes."""
    source, back = _rows(export_lake.open()), _rows(round_trip.open())
    assert set(back) == set(source)
    for uid, row in source.items():
        other = back[uid]
        assert json.loads(str(other["header_json"])) == json.loads(str(row["header_json"]))
        for column in set(row) - INGEST_COLUMNS - {"header_json"}:
            assert other[column] == row[column], column
        assert other["ingest_run"] != row["ingest_run"]


def test_the_pixels_are_bit_identical(export_lake: ExportLake, round_trip: RoundTrip) -> None:
    source, back = export_lake.open(), round_trip.open()
    for uid in _rows(source):
        before, after = np.asarray(source.pixels(uid)), np.asarray(back.pixels(uid))
        assert after.dtype == before.dtype and after.shape == before.shape
        assert after.tobytes() == before.tobytes()


def test_the_pass_through_lake_holds_nothing_of_the_original_patients(
    export_lake: ExportLake, round_trip: RoundTrip
) -> None:
    identifiers = [i for spec in export_lake.specs for i in spec.identifiers()]
    report = audit(round_trip.root, identifiers)
    assert report.searched > 0 and report.clean, [h.describe() for h in report.hits]


def test_a_second_ingest_adds_nothing(round_trip: RoundTrip) -> None:
    again = ingest(round_trip.root, [round_trip.out], key_file=round_trip.key_file)
    assert (again.ingested, again.duplicates) == (0, 9)
    assert round_trip.open().sql("SELECT count(*) AS n FROM instances")["n"][0] == 9


# -- the marks ---------------------------------------------------------------------------------------
def test_files_without_the_marks_are_rejected_with_the_reason(
    export_lake: ExportLake, round_trip: RoundTrip, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()

    def variant(name: str, n: int, *delete: str, **values: str) -> None:
        ds = _renamed(_one_exported(round_trip), n)
        for keyword in delete:
            delattr(ds, keyword)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(src / name, enforce_file_format=True)

    variant("no-removed.dcm", 1, "PatientIdentityRemoved")
    variant("removed-no.dcm", 2, PatientIdentityRemoved="NO")
    variant("no-method.dcm", 3, "DeidentificationMethod", "DeidentificationMethodCodeSequence")
    variant("no-patient-id.dcm", 4, "PatientID")
    variant("method-only.dcm", 5, "DeidentificationMethodCodeSequence")  # one of the two is enough
    variant("codes-only.dcm", 6, "DeidentificationMethod")
    original = next(p for p in export_lake.src.rglob("*.dcm") if "SC_rgb" not in p.name)
    shutil.copy(original, src / "original.dcm")  # as it came from the hospital: no marks
    root, key_file = _passthrough_lake(tmp_path)
    s = ingest(root, [src], key_file=key_file)
    assert s.ingested == 2
    assert dict(s.reject_reasons) == {
        "no_patient_identity_removed": 3,
        "no_deidentification_method": 1,
        "no_patient_id": 1,
    }
    assert set(s.reject_reasons) <= set(REASONS)
    rejects = lake.open(root).sql("SELECT DISTINCT stage FROM rejects")["stage"].to_list()
    assert rejects == ["deidentify"]
    # nothing of the original, unmarked file reached the lake
    spec_ids = [i for spec in export_lake.specs for i in spec.identifiers()]
    assert not find_identifiers(root, [i for i in spec_ids if len(i) >= 5])


# -- the PHI audit -------------------------------------------------------------------------------------
def _digits(n: int, first: str = "0123456789") -> st.SearchStrategy[str]:
    rest = st.text("0123456789", min_size=n - 1, max_size=n - 1)
    return st.tuples(st.sampled_from(first), rest).map("".join)


#: phone numbers in the national and international spellings the cleaner knows, digits drawn at random
PHONE = st.one_of(
    st.tuples(_digits(3, "23456789"), st.sampled_from(" -"), _digits(4)).map("".join),  # 555 0199
    st.tuples(_digits(3, "23456789"), _digits(3), _digits(4)).map(lambda t: f"({t[0]}) {t[1]}-{t[2]}"),
    st.tuples(_digits(2, "123456789"), _digits(2), _digits(7)).map(lambda t: f"+{t[0]} {t[1]} {t[2]}"),
    st.tuples(_digits(2), st.sampled_from("/ -"), _digits(7)).map(lambda t: f"0{t[0]}{t[1]}{t[2]}"),  # 030/1234567
    st.tuples(_digits(2), _digits(4), _digits(4)).map(lambda t: f"+44 {t[0]} {t[1]} {t[2]}"),
)
EMAIL = st.tuples(
    st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,6})?", fullmatch=True),
    st.from_regex(r"[a-z]{2,10}", fullmatch=True),
    st.sampled_from(("org", "com", "de", "example.net")),
).map(lambda t: f"{t[0]}@{t[1]}.{t[2]}")
LABELLED = st.tuples(
    st.sampled_from(("MRN", "Patient ID", "medical record number", "Accession No", "acc#", "NHS number", "PID")),
    st.sampled_from((" ", ": ", " = ", " is ", "# ")),
    st.from_regex(r"[A-Z]{0,2}[0-9]{3,7}", fullmatch=True),
).map("".join)
SSN = st.tuples(_digits(3, "12345678"), _digits(2), _digits(4)).map("-".join)
PHI = {"phi_phone": PHONE, "phi_email": EMAIL, "phi_labelled_identifier": LABELLED, "phi_ssn": SSN}
#: research values that are not PHI and must pass unchanged: shifted dates, numbers, versions, units
RESEARCH_TEXT = (
    "T1 MPRAGE SAG 1.0 mm",
    "follow-up 2019-03-14, 14.03.2019",
    "TR 400 1500 ms",
    "Case 12345678",
    "software 10.100.100",
    "ANONYMIZED",
)
#: where a value is written: a text VR of a public attribute, a private one, or a UN payload
PLACES = (
    ("ImageComments", "LT"),
    ("StudyDescription", "LO"),
    ("SeriesDescription", "LO"),
    ("ProtocolName", "LO"),
    ("AdditionalPatientHistory", "LT"),
    ("TextValue", "UT"),
    ("private", "LO"),
    ("private", "ST"),
    ("private", "UN"),
    ("(0040,0280)", "UN"),  # CommentsOnThePerformedProcedureStep, read as UN
)
_NESTING = ("ReferencedImageSequence", "SourceImageSequence", "ContentSequence")


@st.composite
def phi_value(draw: st.DrawFn) -> tuple[str, str]:
    reason = draw(st.sampled_from(sorted(PHI)))
    value = draw(PHI[reason])
    spelled = draw(st.sampled_from((value, value.lower(), value.upper())))
    before = draw(st.sampled_from(("", "call ", "see ", "NOTE: ", "T1 SAG; ")))
    after = draw(st.sampled_from(("", " after 5", ".", " (desk)")))
    return reason, before + spelled + after


def _place(ds: Dataset, where: tuple[str, str], text: str, depth: int) -> Dataset:
    """``text`` written at ``where`` inside ``depth`` nested sequence items of ``ds``."""
    item = ds
    for i in range(depth):
        inner = Dataset()
        item.add(DataElement(_NESTING[i % len(_NESTING)], "SQ", Sequence([inner])))
        item = inner
    keyword, vr = where
    if keyword == "private":
        item.add_new(0x00291010, "LO", "SITE PRIVATE")
        value: object = text.encode("latin-1") if vr == "UN" else text
        item.add_new(0x00291011, vr, value)
    elif keyword.startswith("("):
        item.add_new(0x00400280, "UN", text.encode("latin-1"))
    else:
        item.add(DataElement(keyword, vr, text))
    return ds


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seeded=phi_value(), where=st.sampled_from(PLACES), depth=st.integers(0, 3))
def test_a_phi_pattern_in_any_text_at_any_depth_rejects_the_file(
    round_trip: RoundTrip, seeded: tuple[str, str], where: tuple[str, str], depth: int
) -> None:
    reason, text = seeded
    ds = _place(_one_exported(round_trip), where, text, depth)
    with pytest.raises(RejectedInput) as caught:
        PassThrough(generate_key()).deidentify(ds)
    assert caught.value.reason == reason and caught.value.stage == "deidentify"
    assert text not in str(caught.value) and text not in caught.value.detail  # the detail names the path only
    assert caught.value.detail.startswith("in ")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.sampled_from(RESEARCH_TEXT), where=st.sampled_from(PLACES[:6]), depth=st.integers(0, 3))
def test_research_text_passes_unchanged(round_trip: RoundTrip, text: str, where: tuple[str, str], depth: int) -> None:
    ds = _place(_one_exported(round_trip), where, text, depth)
    before = ds.to_json_dict()
    result = PassThrough(generate_key()).deidentify(ds)
    assert result.dataset.to_json_dict() == before
    assert result.patient_pseudonym == ds.PatientID and result.day_offset == 0


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seeded=phi_value(), where=st.sampled_from(PLACES), depth=st.integers(0, 2), n=st.integers(0, 10**6))
def test_a_rejected_phi_value_reaches_no_lake_file(
    round_trip: RoundTrip,
    tmp_path_factory: pytest.TempPathFactory,
    seeded: tuple[str, str],
    where: tuple[str, str],
    depth: int,
    n: int,
) -> None:
    reason, text = seeded
    base = tmp_path_factory.mktemp("phi")
    src = base / "src"
    src.mkdir()
    _renamed(_one_exported(round_trip), n).save_as(src / "clean.dcm", enforce_file_format=True)
    _place(_renamed(_one_exported(round_trip), n + 1), where, text, depth).save_as(
        src / "seeded.dcm", enforce_file_format=True
    )
    root, key_file = _passthrough_lake(base)
    s = ingest(root, [src], key_file=key_file)
    assert (s.ingested, dict(s.reject_reasons)) == (1, {reason: 1})
    assert not find_identifiers(root, [text.strip(" .;()")])
    assert text.encode() not in _lake_bytes(root)


def test_a_phone_number_in_a_comment_is_rejected_counted_and_never_shown(
    round_trip: RoundTrip, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ds = _renamed(_one_exported(round_trip), 77)
    ds.ImageComments = "tech: call 555 0199 if the contrast leaks"
    ds.save_as(src / "comment.dcm", enforce_file_format=True)
    root, key_file = _passthrough_lake(tmp_path)
    capsys.readouterr()
    assert main(["ingest", str(src), "--lake", str(root), "--key-file", str(key_file), "--no-progress"]) == 0
    shown = capsys.readouterr()
    assert "rejected: phi_phone 1" in shown.out
    # neither the number nor a part of it; run ids (the time of day), paths and rates are not values
    printed = re.sub(r"R\d{8}T\d{6}-[0-9a-f]{6}", "<run>", shown.out + shown.err).replace(str(tmp_path), "<tmp>")
    printed = re.sub(r"\d+\.\d+", "<rate>", printed)
    assert "555" not in printed and "0199" not in printed
    (log,) = (key_file.parent / "k.key.vault" / "runs").glob("*.jsonl")
    logged = log.read_text()
    assert "ImageComments" in logged and "555 0199" not in logged  # the vault names the attribute only
    assert lake.open(root).sql("SELECT reason FROM rejects")["reason"].to_list() == ["phi_phone"]
    assert b"555 0199" not in _lake_bytes(root)


# -- the profile is fixed ----------------------------------------------------------------------------------
def test_init_on_an_existing_lake_is_refused_whatever_the_profile(round_trip: RoundTrip, tmp_path: Path) -> None:
    before = (round_trip.root / "lake.json").read_bytes()
    assert main(["init", str(round_trip.root), "--profile", "research", "--key-file", str(tmp_path / "k")]) == 2
    with pytest.raises(LakeExistsError):
        lake.init(round_trip.root, key_file=tmp_path / "k2", profile="research")
    assert (round_trip.root / "lake.json").read_bytes() == before


@pytest.mark.parametrize(("made", "edited"), [("pass-through", "research"), ("research", "pass-through")])
def test_an_edited_profile_is_refused_by_the_next_ingest(
    round_trip: RoundTrip, tmp_path: Path, made: str, edited: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _renamed(_one_exported(round_trip), 5).save_as(src / "a.dcm", enforce_file_format=True)
    root, key_file = tmp_path / "lake", tmp_path / "keys" / "k.key"
    lake.init(root, key_file=key_file, profile=made)
    assert ingest(root, [src], key_file=key_file).ingested == 1
    config = json.loads((root / "lake.json").read_text())
    config["deid"]["profile"] = edited
    config["deid"]["options"] = []
    (root / "lake.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=f"ingested with the {made} profile.*lake init NEW --profile {edited}"):
        ingest(root, [src], key_file=key_file)
    assert lake.open(root).sql("SELECT count(*) AS n FROM runs")["n"][0] == 1  # nothing was written


def test_pass_through_takes_no_options_and_no_recipe(round_trip: RoundTrip, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pass-through profile.*retain_uids"):
        lake.init(tmp_path / "a", key_file=tmp_path / "a.key", profile="pass-through", options=["retain_uids"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "a.key").exists()
    code = main(["init", str(tmp_path / "b"), "--profile", "pass-through", "--option", "retain_uids"])
    assert code == 2 and not (tmp_path / "b").exists()
    with pytest.raises(ConfigError, match="unknown de-identification profile 'passthrough'"):
        lake.init(tmp_path / "c", key_file=tmp_path / "c.key", profile="passthrough")
    root, key_file = _passthrough_lake(tmp_path)
    recipe = tmp_path / "site.recipe"
    recipe.write_text("FORMAT dicom\n\n%header\n\nREMOVE ImageComments\n")
    with pytest.raises(RecipeError, match="takes no --recipe"):
        ingest(root, [round_trip.out], key_file=key_file, recipe=recipe)


def test_init_prints_the_pass_through_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "lake"
    assert main(["init", str(root), "--profile", "pass-through", "--key-file", str(tmp_path / "k.key")]) == 0
    out = capsys.readouterr().out
    assert "profile: pass-through" in out and "dates shifted" not in out
    assert lake.open(root).config.deid.profile == "pass-through"
    assert main(["info", "--lake", str(root)]) == 0
    info = capsys.readouterr().out
    assert re.search(r"deid_profile\s+pass-through", info) and "dates kept as they are" in info
