"""Burned-in annotations: the deid package's rules give regions; the per-lake policy decides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

import lake
from lake.deid import burned_in, ocr, pixels
from lake.deid.pixels import (
    PixelPolicy,
    apply_pixel_policy,
    assess,
    decide,
    mask_frame_regions,
    mask_regions,
    risk_reason,
)
from lake.ingest import ingest
from lake.pixels.decode import DecodedPixels
from tests.deid.helpers import ROOT

US = "1.2.840.10008.5.1.4.1.1.6.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(autouse=True)
def _without_ocr() -> object:
    """These tests are of the rules and policies alone (tests/deid/test_ocr.py reads the pixels)."""
    pixels.set_text_finder(None)
    yield
    pixels.set_text_finder(pixels._UNSET)


def _image(n: int, sop_class: str, rows: int = 80, cols: int = 64, **attrs: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = f"{ROOT}8.{n}"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"{ROOT}8.{n}"
    ds.StudyInstanceUID = ROOT + "81"
    ds.SeriesInstanceUID = ROOT + f"82.{sop_class[-3:]}"
    ds.PatientID = "MRN1"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.full((rows, cols), 200, dtype=np.uint8).tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def _philips_cx50(n: int) -> Dataset:
    return _image(n, US, Modality="US", Manufacturer="Philips Medical Systems", ManufacturerModelName="CX50")


def test_deid_rules_give_the_region_of_a_known_device() -> None:
    ds = _philips_cx50(1)
    matches = burned_in.match_rules(ds)
    assert any(m.label == "CX50" and m.group == "graylist" for m in matches)
    reason, boxes = burned_in.find_regions(ds) or ("", [])
    assert reason == "deid_rule:CX50" and boxes == [(0, 0, 800, 59)]  # ctpcoordinates x,y,w,h -> boxes


def test_rules_with_or_lines_and_absence_only_rules() -> None:
    # "Burned In Annotation" (blacklist): ... || contains BurnedInAnnotation YES
    ds = _image(2, CT, Modality="CT", BurnedInAnnotation="YES")
    assert any(m.label == "Burned In Annotation" for m in burned_in.match_rules(ds))
    # "Missing ImageType" tests only absence: not evidence of burned-in text on its own
    plain = _image(3, CT, Modality="CT")
    del plain.ImageType
    assert any("Missing ImageType" in m.label for m in burned_in.match_rules(plain))
    assert burned_in.rule_risk(plain) is None and risk_reason(plain) is None
    derived = _image(4, CT, Modality="CT", ImageType=["DERIVED", "SECONDARY", "SCREEN SAVE"])
    assert risk_reason(derived) is not None


def _fresh_matches(ds: Dataset) -> list[burned_in.RuleMatch]:
    burned_in._matched.clear()
    burned_in._terms.clear()
    return burned_in.match_rules(ds)


def test_rule_matches_kept_per_set_of_values_are_those_a_fresh_evaluation_gives() -> None:
    """Every file of pydicom's and deid's corpora, and variants that differ in one value the rules
    read (or in its presence: ``empty`` tells a present empty value from an absent one)."""
    import pydicom.data
    from pydicom import dcmread

    shipped = sorted((Path(pydicom.data.__file__).parent / "test_files").rglob("*.dcm"))  # no download
    cases = [dcmread(f, stop_before_pixels=True, force=True) for f in shipped[:120]]
    cx50 = _philips_cx50(20)
    other_model = _philips_cx50(21)
    other_model.ManufacturerModelName = "CX60"
    empty_model = _philips_cx50(22)
    empty_model.ManufacturerModelName = ""
    no_model = _philips_cx50(23)
    del no_model.ManufacturerModelName
    cases += [cx50, other_model, empty_model, no_model, _image(24, CT, Modality="CT", BurnedInAnnotation="YES")]
    fresh = [_fresh_matches(ds) for ds in cases]
    burned_in._matched.clear()
    for _round in range(2):  # the second round from the kept matches only
        assert [burned_in.match_rules(ds) for ds in cases] == fresh
    for ds, matches in zip(cases, fresh, strict=True):  # a set of values not seen: from the kept terms
        burned_in._matched.clear()
        assert burned_in.match_rules(ds) == matches
    assert len(burned_in._matched) < len(cases)  # the files that agree on the rules' values share one
    assert any(m.label == "CX50" for m in fresh[-5]) and not any(m.label == "CX50" for m in fresh[-4])
    # reading the values the rules look at says nothing of the file (rules name misspelt keywords)
    from lake import diagnostics

    plain = _image(25, CT, Modality="CT")
    for _round in range(2):
        with diagnostics.capture() as said:
            burned_in.match_rules(plain)
        assert said.results() == ()


def _decoded(ds: Dataset) -> DecodedPixels:
    frames = np.frombuffer(ds.PixelData, dtype=np.uint8).reshape(1, ds.Rows, ds.Columns)
    return DecodedPixels(frames=frames, status="stored", reason=None)


@pytest.mark.parametrize(
    ("policy", "ds_factory", "status", "reason_prefix", "masked"),
    [
        (PixelPolicy.MASK_OR_QUARANTINE, lambda: _philips_cx50(5), "stored", "masked:deid_rule:CX50", True),
        (
            PixelPolicy.MASK_OR_QUARANTINE,
            lambda: _image(6, US, Modality="US"),
            "quarantined",
            "at_risk_sop_class",
            None,
        ),
        (PixelPolicy.MASK, lambda: _philips_cx50(7), "stored", "masked:", True),
        (PixelPolicy.MASK, lambda: _image(8, US, Modality="US"), "stored", "unmasked_no_rule:", False),
        (PixelPolicy.QUARANTINE, lambda: _philips_cx50(9), "quarantined", "at_risk_sop_class", None),
        (PixelPolicy.KEEP_FLAGGED, lambda: _philips_cx50(10), "stored", "flagged:at_risk", False),
        (PixelPolicy.MASK_OR_QUARANTINE, lambda: _image(11, CT, Modality="CT"), "stored", None, False),
    ],
)
def test_policies(policy: PixelPolicy, ds_factory, status: str, reason_prefix: str | None, masked: bool | None) -> None:
    ds = ds_factory()
    decoded = _decoded(ds)
    frames, got_status, reason = apply_pixel_policy(ds, decoded, policy, assess(ds))
    assert got_status == status
    if reason_prefix is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(reason_prefix)
    if masked is None:
        assert frames is None
    elif masked:
        assert frames is not None and (frames[0, :59] == 0).all() and (frames[0, 59:] == 200).all()
    else:
        assert frames is not None and np.array_equal(frames, decoded.frames)


def test_mask_regions_clips_and_covers_every_frame_and_sample() -> None:
    frames = np.ones((2, 10, 12, 3), dtype=np.uint16)
    out = mask_regions(frames, [(2, 1, 5, 3), (10, 8, 99, 99)])
    assert out[:, 1:3, 2:5].sum() == 0 and out[:, 8:, 10:].sum() == 0
    assert out.sum() == frames.sum() - 2 * 3 * (2 * 3 + 2 * 2)
    assert frames.sum() == 2 * 10 * 12 * 3  # the input is not modified


def test_the_reason_is_a_column_of_instances(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _philips_cx50(20).save_as(src / "a.dcm", enforce_file_format=True)
    _image(21, US, Modality="US").save_as(src / "b.dcm", enforce_file_format=True)
    _image(22, CT, Modality="CT", BurnedInAnnotation="YES").save_as(src / "c.dcm", enforce_file_format=True)
    _image(23, CT, Modality="CT").save_as(src / "d.dcm", enforce_file_format=True)
    root = tmp_path / "lake"
    ingest(root, [src])
    lk = lake.open(root)
    rows = {r["pixel_reason"]: r for r in lk.sql("SELECT * FROM instances").to_dicts()}
    assert rows["masked:deid_rule:CX50"]["pixel_status"] == "stored"
    assert rows["at_risk_sop_class:ultrasound"]["pixel_status"] == "quarantined"
    assert rows["burned_in_annotation_yes"]["pixel_status"] == "quarantined"
    assert rows[None]["pixel_status"] == "stored"
    masked_uid = rows["masked:deid_rule:CX50"]["SOPInstanceUID"]
    stored = lk.pixels(masked_uid)
    assert (stored[0, :59] == 0).all() and (stored[0, 59:] == 200).all()
    quarantined = rows["burned_in_annotation_yes"]
    assert quarantined["PatientIdentityRemoved"] == "YES" and quarantined["frame_count"] == 0


# -- properties of masking and of decide() ---------------------------------------------------------
def _boxes(rows: int, cols: int) -> st.SearchStrategy[list[tuple[int, int, int, int]]]:
    """Boxes (x0, y0, x1, y1), some reaching past the frame's edges, some empty."""
    corner = st.tuples(st.integers(-4, cols + 4), st.integers(-4, rows + 4))
    box = st.tuples(corner, corner).map(lambda c: (c[0][0], c[0][1], c[1][0], c[1][1]))
    return st.lists(box, max_size=4)


def _covered(shape: tuple[int, ...], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    inside = np.zeros(shape[1:3], dtype=bool)
    for x0, y0, x1, y1 in boxes:
        inside[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return inside


FRAMES = st.tuples(st.integers(1, 3), st.integers(1, 24), st.integers(1, 24), st.sampled_from([1, 3])).flatmap(
    lambda s: st.tuples(
        st.just(s),
        st.integers(0, 2**32 - 1),
        _boxes(s[1], s[2]),
    )
)


def _frames(shape: tuple[int, int, int, int], seed: int) -> np.ndarray:
    n, rows, cols, samples = shape
    full = (n, rows, cols) if samples == 1 else (n, rows, cols, samples)
    return np.random.default_rng(seed).integers(1, 2**12, full, dtype=np.uint16)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=FRAMES)
def test_a_mask_zeroes_its_boxes_only_and_is_idempotent(case: Any) -> None:
    shape, seed, boxes = case
    frames = _frames(shape, seed)
    before = frames.copy()
    out = mask_regions(frames, boxes)
    inside = _covered(frames.shape, boxes)
    assert np.array_equal(frames, before)  # the input is not modified
    assert (out[:, inside] == 0).all()  # every pixel of every box, in every frame and sample
    assert np.array_equal(out[:, ~inside], frames[:, ~inside])  # nothing outside the boxes
    assert np.array_equal(mask_regions(out, boxes), out)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=FRAMES, frame=st.integers(0, 2))
def test_a_frame_mask_touches_its_own_frame_only(case: Any, frame: int) -> None:
    shape, seed, boxes = case
    frames = _frames(shape, seed)
    i = frame % frames.shape[0]
    out = mask_frame_regions(frames, {i: boxes})
    inside = _covered(frames.shape, boxes)
    assert (out[i][inside] == 0).all() and np.array_equal(out[i][~inside], frames[i][~inside])
    others = [j for j in range(frames.shape[0]) if j != i]
    assert np.array_equal(out[others], frames[others])
    assert np.array_equal(mask_frame_regions(out, {i: boxes}), out)


INK = 255


def _ink_finder(frame: np.ndarray) -> list[ocr.TextBox]:
    """A stand-in for OCR: each 4-connected group of white pixels is a line of text."""
    ink = frame >= INK
    seen = np.zeros(ink.shape, dtype=bool)
    found = []
    for y, x in zip(*np.nonzero(ink), strict=True):
        if seen[y, x]:
            continue
        todo, ys, xs = [(y, x)], [], []
        seen[y, x] = True
        while todo:
            cy, cx = todo.pop()
            ys.append(cy)
            xs.append(cx)
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < ink.shape[0] and 0 <= nx < ink.shape[1] and ink[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    todo.append((ny, nx))
        box = (int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1)
        found.append(ocr.TextBox(box, 90.0, "TEXT"))
    return found


@st.composite
def _inked(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Frames of an 8-bit ultrasound (1 to 8 frames, any size) with white text drawn on some."""
    n, rows, cols = draw(st.integers(1, 8)), draw(st.integers(8, 40)), draw(st.integers(8, 40))
    frames = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 200, (n, rows, cols), dtype=np.uint8)
    frames[:, 0, 0] = 0  # the display range is the full 0-255
    ink = np.zeros(frames.shape, dtype=bool)
    for _ in range(draw(st.integers(0, 4))):
        i, y, x = draw(st.integers(0, n - 1)), draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))
        h, w = draw(st.integers(1, 6)), draw(st.integers(1, 12))
        every = draw(st.booleans())  # an overlay in every frame, or a line in one
        ink[slice(None) if every else i, y : y + h, x : x + w] = True
    frames[ink] = INK
    frames[:, 0, 0] = 0
    ink[:, 0, 0] = False
    return frames, ink


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_inked())
def test_decide_never_stores_text_it_found_unmasked(case: tuple[np.ndarray, np.ndarray]) -> None:
    """Under the default policy: once a line is found in the frames sampled, every frame is read
    and every pixel of every line found is 0 in what is stored; only pixels of the padded lines
    found change, and only to 0; where nothing is found in the sample, nothing changes."""
    frames, ink = case
    n, rows, cols = frames.shape
    ds = _image(40, US, rows=rows, cols=cols, Modality="US", WindowCenter="127.5", WindowWidth="255")  # as stored
    pixels.set_text_finder(_ink_finder)
    decision = decide(ds, DecodedPixels(frames=frames.copy(), status="stored"), PixelPolicy.MASK_OR_QUARANTINE)
    assert decision.frames is not None and decision.status == "stored"
    sampled, _rest = pixels._frame_order(n)
    if not ink[sampled].any():
        assert decision.phi.reason == "no_text_found" and decision.phi.frames_read == len(sampled)
        assert np.array_equal(decision.frames, frames)
        return
    assert decision.phi.reason == "text_found" and decision.phi.frames_read == n
    assert (decision.frames[ink] == 0).all()
    allowed = np.zeros((rows, cols), dtype=bool)
    for frame in frames:
        for line in _ink_finder(frame):
            x0, y0, x1, y1 = ocr.pad(line.box, rows, cols)
            allowed[y0:y1, x0:x1] = True
    changed = decision.frames != frames
    assert not changed[:, ~allowed].any() and (decision.frames[changed] == 0).all()
