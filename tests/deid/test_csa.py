"""Siemens CSA headers: parse and write round-trip, the allow-list filter, and dcm2niix on the result."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pydicom
import pytest

from lake.deid import csa
from lake.deid.clean import TextCleaner
from lake.deid.engine import Deidentifier
from lake.deid.private import load_csa_rules, vouches
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, Profile
from lake.keys import LakeKey
from tests.conftest import shared_dicom
from tests.deid.helpers import base

KEY = LakeKey(bytes(range(32)))
NAME = "QUIXOTE^ALONSO"
CLEANER = TextCleaner([NAME, "QUIXOTE", "ALONSO", "MRN448100"])
VOUCH = csa.Vouchers(lambda v: vouches(CLEANER, v), lambda v: CLEANER.remove_known(v) == v)
PROTOCOL = (
    '<XProtocol> { <Name> "PhoenixMetaProtocol" <ParamString."tProtocolName"> { "QUIXOTE HEAD" } }\n'
    "### ASCCONV BEGIN object=MrProtDataImpl@MrProtocolData version=51130001 ###\n"
    "ulVersion\t = \t51130001\n"
    'tSequenceFileName\t = \t""%SiemensSeq%\\ep2d_diff""\n'
    'tProtocolName\t = \t""QUIXOTE ALONSO DWI""\n'
    'tReferenceImage0\t = \t""1.3.12.2.1107.5.2.19.45160.2018""\n'
    "sKSpace.lBaseResolution\t = \t72\n"
    "sWipMemBlock.alFree[4]\t = \t19870601\n"
    "sSliceArray.ucMode\t = \t0x4\n"
    "### ASCCONV END ###\n"
)


def _image_header() -> bytes:
    elements = [
        csa.element("B_value", 1, "IS", 6, [b"1000    \x00"], n_items=6),
        csa.element(
            "DiffusionGradientDirection", 3, "FD", 4, [b"0.70710678\x00", b"0.00000000\x00", b"0.70710678\x00"], 6
        ),
        csa.element("MosaicRefAcqTimes", 0, "FD", 4, [b"0.00000000\x00", b"482.50000001\x00"], 6),
        csa.element("UsedPatientWeight", 1, "IS", 6, [b"90      \x00"], 6),
        csa.element("PatientName", 1, "PN", 25, [NAME.encode() + b"\x00"], 6),  # a name where none belongs
        csa.element("ImaCoilString", 1, "LO", 19, [b"QUIXOTE\x00"], 6),  # an allowed element holding the name
        csa.element("ImageHistory", 0, "LO", 19, [], 0),
    ]
    return csa.write(csa.CsaHeader(b"\x04\x03\x02\x01", tuple(elements)))


def _series_header() -> bytes:
    elements = [csa.element(csa.PROTOCOL, 1, "UN", 0, [PROTOCOL.encode("latin-1") + b"\x00"], 6)]
    return csa.write(csa.CsaHeader(b"\x04\x03\x02\x01", tuple(elements)))


def test_synthetic_header_round_trips_byte_for_byte() -> None:
    data = _image_header()
    parsed = csa.parse(data)
    assert csa.write(parsed) == data
    assert [e.name for e in parsed.elements][:3] == ["B_value", "DiffusionGradientDirection", "MosaicRefAcqTimes"]
    assert parsed.elements[1].values() == ["0.70710678", "0.00000000", "0.70710678"]
    assert len(parsed.elements[0].items) == 6 and parsed.elements[-1].values() == []


def test_filter_keeps_research_elements_exactly_and_drops_the_rest() -> None:
    original = {e.name: e for e in csa.parse(_image_header()).elements}
    rules, protocol = load_csa_rules()
    counts: Counter[tuple[str, str]] = Counter()
    kept = csa.parse(csa.filter_header(_image_header(), "image", rules, protocol, VOUCH, counts))
    assert [e.name for e in kept.elements] == [
        "B_value",
        "DiffusionGradientDirection",
        "MosaicRefAcqTimes",
        "ImageHistory",
    ]
    for e in kept.elements:
        assert e.raw == original[e.name].raw  # byte for byte
    assert NAME.encode() not in csa.write(kept) and b"QUIXOTE" not in csa.write(kept)
    assert counts[("SiemensCSAImageHeader", "X-csa-element")] == 2
    assert counts[("SiemensCSAImageHeader", "X-csa-value")] == 1


def test_protocol_keeps_numeric_lines_and_safe_strings_only() -> None:
    rules, protocol = load_csa_rules()
    counts: Counter[tuple[str, str]] = Counter()
    out = csa.filter_header(_series_header(), "series", rules, protocol, VOUCH, counts)
    (elem,) = csa.parse(out).elements
    text = elem.values()[0]
    assert text.splitlines() == [
        "### ASCCONV BEGIN object=MrProtDataImpl@MrProtocolData version=51130001 ###",
        "ulVersion\t = \t51130001",
        'tSequenceFileName\t = \t""%SiemensSeq%\\ep2d_diff""',
        "sKSpace.lBaseResolution\t = \t72",
        "sSliceArray.ucMode\t = \t0x4",
        "### ASCCONV END ###",
    ]
    assert counts[("SiemensCSASeriesHeader", "X-protocol-line")] == 3


@pytest.mark.parametrize(
    "data", [b"", b"SV10", b"\x05\x00\x00\x00M\x00\x00\x00", b"SV10\x04\x03\x02\x01\x02\x00\x00\x00M\x00\x00\x00"]
)
def test_malformed_headers_raise(data: bytes) -> None:
    with pytest.raises(csa.CsaError):
        csa.parse(data)


def test_engine_drops_unparsable_csa_and_keeps_filtered_csa() -> None:
    ds = base()
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x10, "OB", _image_header())
    block.add_new(0x20, "OB", b"CSA1 is not kept " + NAME.encode() + b" ")
    result = Deidentifier(KEY, Profile(DEFAULT_RESEARCH_OPTIONS)).deidentify(ds)
    out = result.dataset
    assert (0x0029, 0x1020) not in out and result.counts[("private", "X-csa-unparsable")] == 1
    kept = csa.parse(out[0x0029, 0x1010].value)
    assert "B_value" in [e.name for e in kept.elements] and b"QUIXOTE" not in out[0x0029, 0x1010].value


def _real_mosaic() -> list[Path]:
    files = sorted((shared_dicom("dcm_qa_nih") / "20180918Si" / "mr_0003").glob("*.dcm"))
    if not files:
        pytest.skip("no Siemens mosaic in the shared data")
    return files


def test_real_siemens_csa_round_trips_and_keeps_the_research_elements() -> None:
    ds = pydicom.dcmread(_real_mosaic()[0])
    headers = {off: ds[0x0029, off].value for off in (0x1010, 0x1020)}
    for data in headers.values():
        assert csa.write(csa.parse(data)) == data
    Deidentifier(KEY, Profile(DEFAULT_RESEARCH_OPTIONS)).deidentify(ds)
    image = {e.name: e for e in csa.parse(ds[0x0029, 0x1010].value).elements}
    original = {e.name: e for e in csa.parse(headers[0x1010]).elements}
    assert {"NumberOfImagesInMosaic", "MosaicRefAcqTimes", "SliceNormalVector"} <= set(image)
    assert all(e.raw == original[n].raw for n, e in image.items())
    series = ds[0x0029, 0x1020].value
    assert b"tProtocolName" not in series and b"PatReinPattern" not in series and b"UsedPatientWeight" not in series


def _with_diffusion(src: Path, dst: Path, b_value: int, direction: tuple[float, float, float]) -> None:
    """The real mosaic with a b-value and gradient direction written into its CSA image header."""
    ds = pydicom.dcmread(src)
    parsed = csa.parse(ds[0x0029, 0x1010].value)
    values = {
        "B_value": [f"{b_value}".encode() + b"\x00"],
        "DiffusionGradientDirection": [f"{c:.8f}".encode() + b"\x00" for c in direction],
    }
    elements = tuple(
        csa.element(e.name, e.vm, e.vr, e.syngodt, values[e.name], n_items=6) if e.name in values else e
        for e in parsed.elements
    )
    ds[0x0029, 0x1010].value = csa.write(csa.CsaHeader(parsed.unused, elements))
    ds.save_as(dst)


def _dcm2niix() -> str | None:
    """The dcm2niix executable: pip's ``dcm2niix`` package (installed by the test extras) or on PATH."""
    try:
        import dcm2niix
    except ImportError:
        return shutil.which("dcm2niix")
    return str(dcm2niix.bin)


def test_dcm2niix_reads_the_deidentified_mosaic_with_its_b_values(tmp_path: Path) -> None:
    exe = _dcm2niix()
    if exe is None:
        pytest.skip("dcm2niix is not installed (pip install dcm2niix)")
    files = _real_mosaic()
    src, deid, out = tmp_path / "src", tmp_path / "deid", tmp_path / "out"
    for d in (src, deid, out):
        d.mkdir()
    for i, f in enumerate(files[:2]):
        _with_diffusion(f, src / f.name, 1000 * i, (0.0, 0.0, 1.0) if i == 0 else (0.6, 0.0, 0.8))
    deidentifier = Deidentifier(KEY, Profile(DEFAULT_RESEARCH_OPTIONS))
    for f in sorted(src.iterdir()):
        ds = pydicom.dcmread(f)
        deidentifier.deidentify(ds)
        ds.save_as(deid / f.name)
    subprocess.run(
        [exe, "-b", "y", "-z", "n", "-f", "%s", "-o", str(out), str(deid)], check=True, capture_output=True, timeout=120
    )
    bval = next(out.glob("*.bval")).read_text().split()
    assert [float(b) for b in bval] == [0.0, 1000.0]
    sidecar = json.loads(next(out.glob("*.json")).read_text())
    assert len(sidecar["SliceTiming"]) == 5 and sidecar["PhaseEncodingDirection"] == "j-"
