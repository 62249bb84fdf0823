"""GE Protocol Data Block: decode and re-encode, the allow-list filter, malformed blocks dropped,
a research lake's sidecar SliceTiming from the re-written block, and dcm2niix on de-identified files."""

from __future__ import annotations

import base64
import gzip
import io
import json
import shutil
import struct
import subprocess
from collections import Counter
from datetime import date
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lake
from lake.audit import find_identifiers
from lake.audit.decode import byte_texts
from lake.deid import ge_protocol
from lake.deid.clean import TextCleaner
from lake.deid.csa import Vouchers
from lake.deid.engine import Deidentifier
from lake.deid.private import load_ge_protocol_rules, vouches
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, Profile
from lake.errors import ConfigError
from lake.export.slice_timing import GE_NO_PROTOCOL, GE_PROTOCOL_ELEMENT, GE_SERIES_CREATOR, private_element
from lake.ingest import ingest
from lake.keys import LakeKey
from lake.testing.synthetic import PatientSpec, make_instance
from tests.conftest import shared_dicom
from tests.deid.helpers import base

KEY = LakeKey(bytes(range(32)))
NAME = "QUIXOTE^ALONSO"
CLEANER = TextCleaner([NAME, "QUIXOTE", "ALONSO", "MRN448100"])
VOUCH = Vouchers(lambda v: vouches(CLEANER, v), lambda v: CLEANER.remove_known(v) == v)
EXAM_FILE = "Ex31337Ser4Rx"  # the gzip header's file name: exam and series numbers
FREE_TEXT = "fMRI for Quixote Alonso, claustrophobic"
PROTOCOL_UID = "1.2.840.113819.3.1109952946424919.1485807090146990.42"
LINES = [
    'POSITION "Supine"',
    f'SEDESC "{FREE_TEXT}"',  # free text: never kept
    'IOPT "EPI, FMRI"',
    'EXAMDATE "20180918"',  # a date under a key not listed
    'TR "19870601"',  # a date under a listed numeric key
    'TE "30.0"',
    'PLANE "QUIXOTE"',  # a name under a listed key (not its vocabulary)
    'SLICEORDER "1"',
    'VIEWORDER "0"',
    'SLICEORDER "0"',  # a second line of a key: readers take the first
    'MBACCEL "0"',
    f'PDGMUID "{PROTOCOL_UID}"',
    "not a key line",
    'NOSLC "6"',
]
KEPT = ['IOPT "EPI, FMRI"', 'TE "30.0"', 'SLICEORDER "1"', 'VIEWORDER "0"', 'MBACCEL "0"', 'NOSLC "6"']


def scanner_block(lines: list[str], file_name: str = EXAM_FILE) -> bytes:
    """A block as GE writes it: gzip with a file name and a time, length-prefixed, even length."""
    out = io.BytesIO()
    with gzip.GzipFile(filename=file_name, mode="wb", fileobj=out, mtime=1537285695) as gz:
        gz.write("".join(f"{line}\n" for line in lines).encode("latin-1"))
    stream = out.getvalue()
    block = struct.pack("<I", len(stream)) + stream
    return block + b"\x00" * (len(block) % 2)


def test_real_layout_decodes_and_re_encodes_deterministically() -> None:
    block = scanner_block(LINES)
    assert EXAM_FILE.encode() in block and ge_protocol.decode(block) == LINES
    again = ge_protocol.encode(KEPT)
    assert again == ge_protocol.encode(KEPT) and len(again) % 2 == 0
    assert again[4:8] == b"\x1f\x8b\x08\x00" and again[8:12] == bytes(4)  # no file name, mtime 0
    assert ge_protocol.decode(again) == KEPT
    assert ge_protocol.parse(block)["SLICEORDER"] == "1"  # the first line of a key


def test_filter_keeps_only_allowed_lines_in_order() -> None:
    counts: Counter[tuple[str, str]] = Counter()
    out = ge_protocol.filter_block(scanner_block(LINES), load_ge_protocol_rules(), VOUCH, counts)
    assert ge_protocol.decode(out) == KEPT
    for leaked in (EXAM_FILE, "Quixote", "QUIXOTE", "20180918", "19870601", PROTOCOL_UID, "SEDESC", "Supine"):
        assert leaked.encode() not in out
        assert all(leaked not in text for _, text in byte_texts(out, always=True))
    assert counts[(ge_protocol.LABEL, "K-ge-protocol-line")] == len(KEPT)
    assert counts[(ge_protocol.LABEL, "X-ge-protocol-line")] == len(LINES) - len(KEPT)


def test_every_rule_says_why_and_rejects_free_text() -> None:
    rules = load_ge_protocol_rules()
    assert {"SLICEORDER", "MBACCEL", "IOPT", "NOSLC", "DELACQNOAV"} <= set(rules)
    assert not {"SEDESC", "PDGMUID", "PDGMSTR", "ANATOMY", "CLINICALCOIL"} & set(rules)
    for rule in rules.values():
        assert rule.why
        assert not ge_protocol._keep(rule.key, "QUIXOTE ALONSO 555 0199", rules, VOUCH), rule.key
        assert not ge_protocol._keep(rule.key, "20180918", rules, VOUCH), rule.key


class _Text:
    def __init__(self, text: str) -> None:
        self.text = text

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.text


@pytest.mark.parametrize(
    ("entry", "message"),
    [('key = "X"\nwhy = "y"', "without 'pattern'"), ('key = "X"\npattern = "("\nwhy = "y"', "invalid")],
)
def test_malformed_rules_are_config_errors(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_ge_protocol_rules(_Text(f"[[ge_protocol]]\n{entry}\n"))  # type: ignore[arg-type]


def _gzip_bomb() -> bytes:
    stream = gzip.compress(b"A" * (ge_protocol.MAX_TEXT + 10), mtime=0)
    return struct.pack("<I", len(stream)) + stream


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x10\x00\x00\x00",
        gzip.compress(b'SLICEORDER "1"\n'),  # no length prefix
        struct.pack("<I", 4000) + gzip.compress(b'SLICEORDER "1"\n'),  # length past the value
        scanner_block(['SLICEORDER "1"'])[:-12],  # truncated stream
        scanner_block(['<?xml version="1.0"?>', "<Protocol/>"]),  # newer software's XML
        scanner_block([f'SEDESC "{FREE_TEXT}"']),  # nothing allowed: an empty block says nothing
        _gzip_bomb(),
    ],
)
def test_malformed_blocks_raise(data: bytes) -> None:
    with pytest.raises(ge_protocol.GeProtocolError):
        ge_protocol.filter_block(data, load_ge_protocol_rules(), VOUCH, Counter())


def test_engine_drops_malformed_blocks_and_keeps_rewritten_ones() -> None:
    bad = base()
    bad.private_block(0x0025, GE_SERIES_CREATOR, create=True).add_new(0x1B, "OB", b"raw " + NAME.encode() + b" ")
    result = Deidentifier(KEY, Profile(DEFAULT_RESEARCH_OPTIONS)).deidentify(bad)
    assert (0x0025, 0x101B) not in result.dataset and result.counts[("private", "X-ge-protocol-unparsable")] == 1
    good = base()
    good.private_block(0x0025, GE_SERIES_CREATOR, create=True).add_new(0x1B, "OB", scanner_block(LINES))
    out = Deidentifier(KEY, Profile(DEFAULT_RESEARCH_OPTIONS)).deidentify(good).dataset
    assert out[0x0025, 0x0010].value == GE_SERIES_CREATOR
    assert ge_protocol.decode(out[0x0025, 0x101B].value) == KEPT


# -- a synthetic GE EPI series in a research lake ------------------------------------------------
SLICES = 6
TR_MS = 2000.0


def _ge_epi_series(folder: Path, block: bytes | None = None) -> PatientSpec:
    spec = PatientSpec(name=NAME, patient_id="MRN448100", birth_date="19500101", accession_prefix="ACC9X")
    folder.mkdir(parents=True)
    root = "1.2.826.0.1.3680043.9.7777.4242."
    for i in range(SLICES):
        ds = make_instance(spec, root + "1", root + "2", root + f"3.{i}", root + "4", date(1987, 6, 1), i, "MR")
        ds.Manufacturer = "GE MEDICAL SYSTEMS"
        ds.ScanningSequence = "EP"
        ds.RepetitionTime = str(TR_MS)
        ds.EchoTime = "30"
        value = scanner_block(LINES) if block is None else block
        ds.private_block(0x0025, GE_SERIES_CREATOR, create=True).add_new(0x1B, "OB", value)
        ds.save_as(folder / f"s{i}.dcm", enforce_file_format=True)
    return spec


def test_research_lake_keeps_the_rewritten_block_and_the_sidecar_has_slice_timing(tmp_path: Path) -> None:
    pytest.importorskip("nibabel")
    from lake.export.nifti import export_nifti

    spec = _ge_epi_series(tmp_path / "src")
    root, key = tmp_path / "lake", tmp_path / "k.key"
    lake.init(root, key_file=key, burned_in_policy="keep-flagged")
    summary = ingest(root, [tmp_path / "src"], key_file=key, workers=1)
    assert summary.rejected == 0, summary.reject_reasons
    lk = lake.open(root, key_file=key)
    sops = lk.sql("SELECT SOPInstanceUID FROM instances")["SOPInstanceUID"].to_list()
    assert len(sops) == SLICES
    for sop in sops:
        element = private_element(lk.header(sop, bulk=True), 0x0025, GE_SERIES_CREATOR, GE_PROTOCOL_ELEMENT)
        assert element is not None
        block = base64.b64decode(element["InlineBinary"])
        assert ge_protocol.decode(block) == KEPT  # only allowed keys, in order
        assert set(ge_protocol.parse(block)) <= set(load_ge_protocol_rules())
    uid = lk.sql("SELECT DISTINCT SeriesInstanceUID FROM instances")[0, 0]
    (written,) = export_nifti(lk, [uid], tmp_path / "out").written
    side = json.loads(written.nifti.with_name(written.nifti.name.replace(".nii.gz", ".json")).read_text())
    step = TR_MS / SLICES / 1000.0  # interleaved: positions 0, 2, 4 first, then 1, 3, 5
    assert side["SliceTiming"] == pytest.approx([0, 3 * step, step, 4 * step, 2 * step, 5 * step], abs=1e-6)
    # lake audit-phi's reader inflates the block (it finds what the scanner's block held, see below)
    assert find_identifiers(root, [EXAM_FILE, FREE_TEXT, "claustrophobic", PROTOCOL_UID, "Supine"]) == []
    assert not [h for h in find_identifiers(root, spec.identifiers()) if "0025" in (h.tag_path or "")]


def test_a_malformed_block_is_removed_counted_and_the_sidecar_says_why(tmp_path: Path) -> None:
    pytest.importorskip("nibabel")
    from lake.export.nifti import export_nifti

    raw = scanner_block(LINES)[:-12]  # truncated: FREE_TEXT and EXAM_FILE still in its bytes
    _ge_epi_series(tmp_path / "src", block=raw)
    root, key = tmp_path / "lake", tmp_path / "k.key"
    lake.init(root, key_file=key, burned_in_policy="keep-flagged")
    summary = ingest(root, [tmp_path / "src"], key_file=key, workers=1)
    assert summary.rejected == 0 and summary.ingested == SLICES
    (report,) = (root / "reports").glob("deid-*.json")
    actions = {(a["attribute"], a["action"]): a["count"] for a in json.loads(report.read_text())["actions"]}
    assert actions[("private", "X-ge-protocol-unparsable")] == SLICES
    lk = lake.open(root, key_file=key)
    sop = lk.sql("SELECT SOPInstanceUID FROM instances LIMIT 1")[0, 0]
    assert private_element(lk.header(sop, bulk=True), 0x0025, GE_SERIES_CREATOR, GE_PROTOCOL_ELEMENT) is None
    assert find_identifiers(root, [EXAM_FILE, "claustrophobic"]) == []
    uid = lk.sql("SELECT DISTINCT SeriesInstanceUID FROM instances")[0, 0]
    (written,) = export_nifti(lk, [uid], tmp_path / "out").written
    side = json.loads(written.nifti.with_name(written.nifti.name.replace(".nii.gz", ".json")).read_text())
    assert "SliceTiming" not in side and GE_NO_PROTOCOL in side["LakeSidecarNotes"]


def test_the_audit_reads_inside_a_block() -> None:
    texts = [text for _, text in byte_texts(scanner_block(LINES), always=True)]
    assert any("claustrophobic" in t for t in texts) and any(EXAM_FILE in t for t in texts)


# -- the real GE EPI series: dcm2niix on de-identified files ---------------------------------------
def test_dcm2niix_reads_the_same_slice_timing_from_de_identified_ge_files(tmp_path: Path) -> None:
    """The sequential series: dcm2niix finds ``\\nSLICEORDER`` in the re-written block as in the original."""
    dcm2niix = pytest.importorskip("dcm2niix")
    series = shared_dicom("dcm_qa_nih") / "20180918GE" / "mr_0005"
    files = sorted(series.glob("*.dcm"))
    if not files:
        pytest.skip("no GE EPI series in the shared data")
    deid = Deidentifier(KEY, Profile(DEFAULT_RESEARCH_OPTIONS))
    (tmp_path / "deid").mkdir()
    for f in files:
        ds = deid.deidentify(pydicom.dcmread(f)).dataset
        assert b"SEDESC" not in ds[0x0025, 0x101B].value
        ds.save_as(tmp_path / "deid" / f.name)
    sidecars = {}
    for name, folder in (("original", series), ("deid", tmp_path / "deid")):
        out = tmp_path / f"d2n-{name}"
        out.mkdir()
        subprocess.run(
            [dcm2niix.bin, "-b", "o", "-f", "%s", "-o", str(out), str(folder)], check=True, capture_output=True
        )
        (sidecar,) = out.glob("*.json")
        sidecars[name] = json.loads(sidecar.read_text())
    assert sidecars["deid"]["SliceTiming"] == sidecars["original"]["SliceTiming"]
    shutil.rmtree(tmp_path / "deid")


# -- injected identifiers never survive the filter (Hypothesis) ----------------------------------
_letters = st.text(alphabet="BCDFGHJKLMNPQRSTVWXZ", min_size=5, max_size=9)


@given(
    family=_letters,
    given_name=_letters,
    patient_number=st.integers(100000, 99999999),
    birth=st.dates(min_value=date(1920, 1, 1), max_value=date(2005, 12, 31)),
    data=st.data(),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_identifiers_injected_into_any_line_never_survive(
    family: str, given_name: str, patient_number: int, birth: date, data: st.DataObject
) -> None:
    patient_id = f"MRN{patient_number}"
    forms = [family, f"{family}^{given_name}", f"{given_name} {family}".title(), patient_id, birth.strftime("%Y%m%d")]
    keys = [*sorted(set(load_ge_protocol_rules()) - {"NOSLC"}), "SEDESC", "PDGMSTR", "CLINICALCOIL"]
    injected = [f'{data.draw(st.sampled_from(keys))} "{data.draw(st.sampled_from(forms))}"' for _ in range(4)]
    lines = [*injected[:2], 'SLICEORDER "1"', 'IOPT "EPI, FMRI"', *injected[2:], 'NOSLC "6"']
    ds = base()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = f"{family}^{given_name}", patient_id, birth.strftime("%Y%m%d")
    ds.private_block(0x0025, GE_SERIES_CREATOR, create=True).add_new(0x1B, "OB", scanner_block(lines))
    out = Deidentifier(KEY, Profile(DEFAULT_RESEARCH_OPTIONS)).deidentify(ds).dataset
    text = "\n".join(ge_protocol.decode(out[0x0025, 0x101B].value))
    for needle in (family, given_name, patient_id, birth.strftime("%Y%m%d")):
        assert needle.casefold() not in text.casefold(), needle
    assert ge_protocol.parse(out[0x0025, 0x101B].value).get("NOSLC") == "6"  # the safe lines stay
