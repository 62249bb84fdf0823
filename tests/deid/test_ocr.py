"""OCR text detection of burned-in identifiers: text found is masked, clean images are unchanged,
derived CT/MR without text are stored (no quarantine on a guess), the verdict is a column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

import lake
from lake.deid import ocr, ocr_read, ocr_sources, pixels
from lake.deid.pixels import PixelPolicy, assess, decide
from lake.ingest import ingest
from lake.pixels.decode import DecodedPixels, decode
from lake.testing import text_corpus
from tests.deid.helpers import ROOT

pytestmark = pytest.mark.skipif(not ocr.available(), reason=f"OCR unavailable: {ocr.unavailable_reason()}")
if not text_corpus.fonts():
    pytestmark = pytest.mark.skip(reason="no DejaVu fonts (Debian fonts-dejavu-core) to render text with")

US = "1.2.840.10008.5.1.4.1.1.6.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(autouse=True)
def _with_ocr() -> object:
    pixels.set_text_finder(ocr.find_text)
    yield
    pixels.set_text_finder(pixels._UNSET)


def _dataset(n: int, sop_class: str, frame: np.ndarray, **attrs: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = f"{ROOT}9.{n}"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"{ROOT}9.{n}"
    ds.StudyInstanceUID = ROOT + "91"
    ds.SeriesInstanceUID = ROOT + f"92.{n}"
    ds.PatientID = "MRN77123"
    ds.PatientName = "MUSTERMANN^ERIKA"
    ds.Modality = "CT" if sop_class == CT else "US"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows, ds.Columns = frame.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = frame.astype(np.uint8).tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def _decoded(frame: np.ndarray) -> DecodedPixels:
    return DecodedPixels(frames=frame[np.newaxis].copy(), status="stored")


def test_clean_images_are_unchanged_and_text_is_masked() -> None:
    images = text_corpus.corpus(seed=11, count=10)  # 8-30 px
    masked = 0
    for n, image in enumerate(images):
        ds = _dataset(n, US, image.pixels)
        d = decide(ds, _decoded(image.pixels), PixelPolicy.MASK_OR_QUARANTINE, assess(ds))
        assert d.status == "stored"
        if image.ink is None:  # nothing found, nothing altered
            assert np.array_equal(d.frames, image.pixels[np.newaxis]), image.kind
            assert (d.phi.method, d.phi.reason, d.phi.boxes) == ("ocr", "no_text_found", 0)
        else:
            assert d.frames is not None
            masked += bool((d.frames[0][image.ink] == 0).all())
    # every visible ink pixel masked in 9 of 10 (fixed seed; benchmarks/ocr.py: 200 pairs)
    assert masked >= 9


def test_a_banner_is_masked_and_ranked_by_the_header_identifiers() -> None:
    rng = np.random.default_rng(3)
    frame = text_corpus.background(rng, "US")
    frame[:40] = 0
    for text, rank in (("MUSTERMANN ERIKA 77123", "identifier_in_text"), ("GAIN 45 DEPTH 12CM", "text_found")):
        shown, ink = text_corpus.render(rng, frame[:40].copy(), text, 20)
        image = frame.copy()
        image[:40] = shown
        full_ink = np.zeros(image.shape, dtype=bool)
        full_ink[:40] = ink
        ds = _dataset(50, US, image)
        d = decide(ds, _decoded(image), PixelPolicy.MASK_OR_QUARANTINE, assess(ds))
        assert d.status == "stored" and d.frames is not None
        assert (d.frames[0][full_ink] == 0).all()
        assert d.phi.reason == rank and d.phi.boxes >= 1 and 0 < d.phi.masked_fraction < 0.2
        assert d.reason == "masked:ocr"
        assert text not in repr(d)  # the text read is never part of the verdict


def test_undecidable_images_are_quarantined() -> None:
    frame = np.full((64, 64), 90, dtype=np.uint8)
    face = _dataset(60, "1.2.840.10008.5.1.4.1.1.77.1.4", frame, RecognizableVisualFeatures="YES")
    label = _dataset(61, "1.2.840.10008.5.1.4.1.1.77.1.6", frame, ImageType=["ORIGINAL", "PRIMARY", "LABEL"])
    for ds, why in ((face, "recognizable_visual_features"), (label, "wsi_label")):
        d = decide(ds, _decoded(frame), PixelPolicy.MASK_OR_QUARANTINE, assess(ds))
        assert d.frames is None and d.status == "quarantined" and d.phi.reason == why


def test_derived_ct_without_text_is_stored_and_with_text_masked(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    src = tmp_path / "src"
    src.mkdir()
    clean = text_corpus.background(rng, "CT")
    texted, ink = text_corpus.render(rng, clean, "DOE^JANE 12345678", 24)
    derived = {"ImageType": ["DERIVED", "SECONDARY", "MPR"], "SeriesInstanceUID": ROOT + "93"}
    _dataset(70, CT, clean, **derived).save_as(src / "a.dcm", enforce_file_format=True)
    _dataset(71, CT, texted, **derived).save_as(src / "b.dcm", enforce_file_format=True)
    root = tmp_path / "lake"
    ingest(root, [src])
    lk = lake.open(root)
    rows = lk.sql("SELECT * FROM instances ORDER BY pixel_phi_boxes").to_dicts()
    assert [r["pixel_status"] for r in rows] == ["stored", "stored"]
    assert rows[0]["pixel_phi_reason"] == "no_text_found" and rows[0]["pixel_reason"] is None
    assert np.array_equal(lk.pixels(rows[0]["SOPInstanceUID"])[0], clean)
    assert rows[1]["pixel_phi_method"] == "ocr" and rows[1]["pixel_phi_boxes"] >= 1
    assert (lk.pixels(rows[1]["SOPInstanceUID"])[0][ink] == 0).all()  # the whole line, not a part
    assert rows[1]["pixel_phi_frames_read"] == 1


def _deid_data() -> Path:
    deid_data = pytest.importorskip("deid_data", reason="pip deid-data (the ocr extra) is not installed")
    return Path(deid_data.__file__).parent / "data"


@pytest.mark.parametrize("name", ["GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm"])
def test_deid_data_ultrasound_banners_are_masked(name: str) -> None:
    import pydicom

    ds = pydicom.dcmread(_deid_data() / "ultrasounds" / name)
    decoded = decode(ds)
    d = decide(ds, decoded, PixelPolicy.MASK_OR_QUARANTINE, assess(ds))
    assert d.status == "stored" and d.frames is not None
    assert d.phi.boxes >= 1 and d.reason is not None and d.reason.startswith("masked:")
    # every banner masked: a second reading of the masked frame finds no text at all
    assert ocr.find_text(ocr.display_frame(d.frames[0])) == []


def _masked(image: text_corpus.TextImage, found: list[ocr.TextBox]) -> np.ndarray:
    mask = np.zeros(image.pixels.shape, dtype=bool)
    for line in found:
        x0, y0, x1, y1 = ocr.pad(line.box, *image.pixels.shape)
        mask[y0:y1, x0:x1] = True
    return mask


def test_a_line_partly_read_is_masked_whole() -> None:
    """Lines of which Tesseract reads a part ("JANE" of "DOE^JANE", "07/2020" of "17/07/2020") are
    masked whole: the candidates beside a line read, on its row, are lines too, whatever their
    reading's confidence (masked unread where it is no text at all)."""
    images = text_corpus.corpus(seed=2024, count=56)
    for n in (93, 111):  # found in part before (benchmarks/ocr.py, seed 2024)
        image = images[n]
        assert image.ink is not None
        found = ocr.find_text(image.pixels)
        assert any(line.confidence >= ocr_read.SURE_CONFIDENCE for line in found) and len(found) >= 2
        assert _masked(image, found)[image.ink].all()


@pytest.mark.parametrize("case", text_corpus.HARD_CASES)
def test_hard_cases_are_masked(case: str) -> None:
    """Lines on ultrasound speckle, at a low contrast, inverse (dark on dark, bright on bright),
    written up the frame (turned 90 degrees) and 8-9 px tall: both of each in the fixed seed
    (before issue 14's third part: both rotated, one of two on speckle; benchmarks/ocr.py
    measures 100)."""
    images = [i for i in text_corpus.hard_corpus(seed=2025, count=10) if i.kind.startswith(case)]
    hits = [bool(_masked(i, ocr.find_text(i.pixels))[i.ink].all()) for i in images if i.ink is not None]
    assert hits == [True, True]


def test_text_on_speckle_is_found_by_its_colour() -> None:
    """Text drawn in one colour on ultrasound speckle, which no top-hat separates and Tesseract
    reads poorly (nothing was found in these two before): the tile whose histogram peaks at the
    text's colour gives the line, read at a lower confidence, and it is masked whole."""
    images = text_corpus.corpus(seed=2024, count=18)
    for n in (5, 35):
        image = images[n]
        assert image.kind == "US" and image.ink is not None
        source = ocr_sources.ink_source(image.pixels, ocr_sources.stand_out(image.pixels))
        ys, xs = np.nonzero(image.ink)
        assert any(x0 <= xs.mean() < x1 and y0 <= ys.mean() < y1 for x0, y0, x1, y1 in source.candidates())
        assert _masked(image, ocr.find_text(image.pixels))[image.ink].all()
    clean = images[4]  # the same kind without text: the colour source gives (almost) no line
    assert clean.ink is None and clean.kind == "US"
    assert len(ocr_sources.ink_source(clean.pixels, ocr_sources.stand_out(clean.pixels)).candidates()) <= 2
    assert ocr.find_text(clean.pixels) == []


def test_a_faint_word_between_words_read_is_masked() -> None:
    """A word drawn over a ground that nears its colour ("BLOGGS" of "Patient: BLOGGS FRED") is
    masked with the words read beside it: the line grows over what stands out in its row band
    where the rows above and below are quiet (partly masked before, benchmarks/ocr.py seed 2024)."""
    images = text_corpus.corpus(seed=2024, count=80)
    for n in (139, 159):
        image = images[n]
        assert image.ink is not None
        assert _masked(image, ocr.find_text(image.pixels))[image.ink].all()


def _cine(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` ultrasound frames whose speckle moves (drawn afresh) under a still black banner."""
    frames = np.stack([text_corpus.background(rng, "US") for _ in range(count)])
    frames[:, :40] = 0
    return frames


def test_multiframe_lines_are_masked_in_the_frames_they_belong_to() -> None:
    """An overlay (on a still ground, or found at the same place in most frames) is masked in every
    frame, even where OCR found it in one frame only; a line found in one frame on a moving ground
    (speckle read as text) is masked in that frame only."""
    frames = _cine(np.random.default_rng(8), 6)
    banner, moving, recurring, chance = (
        (10, 10, 200, 30),
        (100, 300, 220, 330),
        (300, 100, 400, 130),
        (50, 400, 150, 430),
    )
    found = [(2, banner), (4, moving)]  # the banner read in one frame only
    found += [(i, (300 + i, 100, 400 + i, 130)) for i in range(4)]  # a line on the moving ground, 4 of 6 frames
    found += [(1, chance), (2, (52, 402, 150, 432))]  # speckle read at about one place in 2 of 6 frames
    every, single = pixels.frame_boxes(frames, found, read=6)
    assert banner in every and (300, 100, 400, 130) in every
    assert single == {4: [moving], 1: [chance], 2: [(52, 402, 150, 432)]}
    masked = pixels.mask_frame_regions(pixels.mask_regions(frames, every), single)
    x0, y0, x1, y1 = moving
    assert (masked[4, y0:y1, x0:x1] == 0).all() and np.array_equal(masked[3, y0:y1, x0:x1], frames[3, y0:y1, x0:x1])
    x0, y0, x1, y1 = recurring
    assert (masked[:, y0:y1, x0:x1] == 0).all()  # frames 4 and 5 too, where OCR did not find it


def test_multiframe_decision_masks_an_overlay_everywhere_and_speckle_once() -> None:
    rng = np.random.default_rng(9)
    frames = _cine(rng, 8)
    shown, ink = text_corpus.render(rng, frames[0, :40].copy(), "MUSTERMANN ERIKA 77123", 20)
    frames[:, :40] = shown  # the same banner drawn in every frame
    full_ink = np.zeros(frames.shape[1:], dtype=bool)
    full_ink[:40] = ink
    calls: list[int] = []

    def finder(grey: np.ndarray) -> list[ocr.TextBox]:
        calls.append(len(calls))
        lines = [line for line in ocr.find_text(grey) if line.box[3] <= 48]  # the banner only
        if len(calls) == 3:  # and in one frame, a box in speckle, as OCR finds by chance
            lines.append(ocr.TextBox((200, 300, 300, 320), 45.0, "XXXX"))
        return lines if len(calls) in (3, 5) else lines[:0]  # the banner found in two frames only

    pixels.set_text_finder(finder)
    ds = _dataset(80, US, frames[0], NumberOfFrames=8)
    d = decide(ds, DecodedPixels(frames=frames.copy(), status="stored"), PixelPolicy.MASK_OR_QUARANTINE, assess(ds))
    assert d.frames is not None and d.phi.frames_read == 8 and d.phi.reason == "identifier_in_text"
    assert all((d.frames[i][full_ink] == 0).all() for i in range(8))  # the banner: every frame
    speckle = d.frames[:, 300:320, 200:300]
    assert sum(bool((f == 0).all()) for f in speckle) == 1  # the speckle box: its own frame only
    assert d.phi.masked_fraction < 0.2


def _covers(source: ocr_sources.Source, ink: np.ndarray) -> bool:
    """Whether one of ``source``'s candidates holds the centre of the text's ink."""
    ys, xs = np.nonzero(ink)
    return any(x0 <= xs.mean() < x1 and y0 <= ys.mean() < y1 for x0, y0, x1, y1 in source.candidates())


def test_small_text_on_speckle_is_found_by_its_colour_in_a_line_tall_tile() -> None:
    """11 and 15 px text on ultrasound speckle that none of the first three sources gives a
    candidate for (most of its pixels are antialiased edge: 44 and 64 of the drawn colour): the
    tiles one small line tall find its colour, nearness to it is read, and the line is masked whole;
    in the clean frames nothing is found."""
    images = text_corpus.corpus(seed=2024, count=183)
    for n in (265, 365):
        image = images[n]
        assert image.kind == "US" and image.ink is not None
        apart = ocr_sources.stand_out(image.pixels)
        earlier = [*ocr_sources.tophat_sources(image.pixels), ocr_sources.flat_source(image.pixels, apart)]
        assert not any(_covers(source, image.ink) for source in [*earlier, ocr_sources.ink_source(image.pixels, apart)])
        assert _covers(ocr_sources.line_ink_source(image.pixels, apart), image.ink)
        assert _masked(image, ocr.find_text(image.pixels))[image.ink].all()
        clean = images[n - 1]
        assert clean.ink is None and ocr.find_text(clean.pixels) == []


def test_near_ink_keeps_an_antialiased_stroke_and_drops_speckle() -> None:
    """Nearness to the ink: a stroke whose centre is the ink and whose edges are half way to the
    ground stays a bright bar (scaled 3 times); single pixels of the ink's value on a ground of
    other values fade to under half by the median."""
    crop = np.full((15, 40), 60, dtype=np.uint8)
    crop[7, 3:27] = 200  # the stroke, drawn in the ink
    crop[6, 3:27] = crop[8, 3:27] = 198  # its antialiased edges, near the ink
    crop[12, 33] = crop[2, 35] = 200  # specks of the ink's value
    near = ocr_read.near_ink(crop, 200)
    assert near.shape == (45, 120)
    assert near[19:26, 15:75].min() >= 240  # the stroke (its outer rows are the edge of the scaled bar)
    assert near[33:40, 96:104].max() < 128 and near[3:10, 102:110].max() < 128  # the specks


def test_a_reading_that_changes_with_its_scale_is_not_text() -> None:
    """Blobs and speckle that Tesseract read as 4-5 letters at a low confidence (clean images 274
    and 324 of benchmarks/ocr.py's seed 2024 were altered so) read as other letters at another
    scale: they are not text, and the images are left alone; the text drawn on the same grounds
    (275, 325) is still masked."""
    images = text_corpus.corpus(seed=2024, count=163)
    for n in (274, 324):
        clean, text = images[n], images[n + 1]
        assert clean.ink is None and text.ink is not None
        assert ocr.find_text(clean.pixels) == []
        assert _masked(text, ocr.find_text(text.pixels))[text.ink].all()


def test_a_line_of_text_reads_the_same_at_each_scale() -> None:
    """A rendered line, read as a candidate is read, is read again alike at 28 and 60 px; a reading
    it does not give (other letters) is not confirmed."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("L", (160, 14), 30)
    font = ImageFont.truetype(str(text_corpus.fonts()[0]), 11)
    ImageDraw.Draw(im).text((4, 0), "DOE JANE 4711", font=font, fill=220)
    crop = np.asarray(im)
    text, _confidence = ocr_read.read(crop, False)
    assert sum(c.isalnum() for c in text) >= 8
    assert ocr_read.read_again(crop, False, text)
    assert not ocr_read.read_again(crop, False, "XQZW")


def test_a_line_read_at_no_confidence_but_alike_at_every_scale_is_masked() -> None:
    """A 30 px "DOE^JANE" on ultrasound that Tesseract reads at a confidence of 0 (held-out seed
    2041, image 345, missed before) reads the same letters at 28 and 60 px: it is text."""
    image = text_corpus.corpus(seed=2041, count=173)[345]
    assert image.ink is not None
    assert _masked(image, ocr.find_text(image.pixels))[image.ink].all()


def test_the_clipped_edge_of_a_disc_is_not_text() -> None:
    """Clean MR frames 52 and 102 of the held-out seed 2041 were altered: a blob of clipped white,
    one piece, read as a few letters. A binary crop not in pieces is not text below the sure
    confidence."""
    images = text_corpus.corpus(seed=2041, count=52)
    for n in (52, 102):
        assert images[n].ink is None and images[n].kind == "MR"
        assert ocr.find_text(images[n].pixels) == []


def test_in_pieces_tells_characters_from_one_blob() -> None:
    blob = np.zeros((20, 60), dtype=np.uint8)
    blob[2:18, 5:55] = 255
    blob[6:9, 10:50:6] = 0  # holes do not make pieces
    assert not ocr_read.in_pieces(blob, True)
    split = blob.copy()
    split[:, 29:32] = 0
    assert ocr_read.in_pieces(split, True)
    short = np.zeros_like(blob)
    short[2:18, 5:25] = 255
    short[15:18, 35:55] = 255  # a piece under 0.4 of the height is no character
    assert not ocr_read.in_pieces(short, True)
    assert ocr_read.in_pieces(blob, False)  # a grey crop is not judged


@pytest.mark.parametrize("n", [25, 35])
def test_a_text_like_line_found_alone_is_masked_whole(n: int) -> None:
    """Ultrasound lines of 18 and 10 px on speckle that no reader confirms (held-out seed 2041,
    missed before) are found as text-like in some of their tiles only: a line found alone grows by
    half a tile and is masked whole."""
    image = text_corpus.corpus(seed=2041, count=18)[n]
    assert image.ink is not None and image.kind == "US"
    found = ocr.find_text(image.pixels)
    assert found and all(line.confidence == 0 for line in found)
    assert _masked(image, found)[image.ink].all()


def test_the_next_line_of_a_block_is_of_the_same_kind() -> None:
    read = [ocr.TextBox((16, 181, 95, 200), 93.0)]  # "Dyn R 58" of deid-data's GREYSCALE_IMAGE.dcm
    assert ocr._same_kind((27, 163, 53, 174), read)  # "60%" above it, smaller
    assert ocr._same_kind((100, 183, 140, 199), read)  # beside it on its row
    assert not ocr._same_kind((27, 140, 53, 151), read)  # two lines above
    assert not ocr._same_kind((120, 163, 160, 174), read)  # above, but not over its columns
    assert not ocr._same_kind((27, 170, 53, 176), read)  # too small to be a line of its block


def test_a_crop_read_before_is_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reading depends on the crop alone: the same pixels (an overlay repeated across a series) are
    read by Tesseract once, with the same result; another crop, or the same crop read as binary or at
    another height, is read anew; no more than READINGS_KEPT readings are kept, and none once
    forget_readings ran."""
    calls: list[tuple[bytes, bool, int]] = []
    real = ocr_read._read

    def counted(crop: np.ndarray, binary: bool, height: int) -> tuple[str, float]:
        calls.append((crop.tobytes(), binary, height))
        return real(crop, binary, height)

    monkeypatch.setattr(ocr_read, "_read", counted)
    monkeypatch.setattr(ocr_read, "READINGS_KEPT", 3)
    ocr_read.forget_readings()
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("L", (160, 14), 30)
    ImageDraw.Draw(im).text((4, 0), "DOE JANE 4711", font=ImageFont.truetype(str(text_corpus.fonts()[0]), 11), fill=220)
    crop = np.asarray(im)
    first = ocr_read.read(crop, False)
    assert ocr_read.read(crop.copy(), False) == first and len(calls) == 1  # equal pixels: one reading
    assert sum(c.isalnum() for c in first[0]) >= 8
    ocr_read.read(crop, True)
    ocr_read.read(crop, False, 60)
    ocr_read.read(crop[:, :80], False)
    assert len(calls) == 4  # binary, another height, another crop: each read
    ocr_read.read(crop, False)  # the oldest reading was let go (3 kept): read again
    assert len(calls) == 5 and len(ocr_read._readings) == 3
    ocr_read.forget_readings()
    assert ocr_read.read(crop, True) == ocr_read.read(crop, True) and len(calls) == 6 and len(ocr_read._readings) == 1


def test_an_ingest_keeps_no_reading_after_it(tmp_path: Path) -> None:
    """OCR's readings of a run's pixels (text, in memory) do not outlive the run."""
    rng = np.random.default_rng(3)
    frame = text_corpus.background(rng, "US")
    frame[:40] = 0
    frame[:40] = text_corpus.render(rng, frame[:40].copy(), "MUSTERMANN ERIKA 77123", 20)[0]
    files = tmp_path / "in"
    files.mkdir()
    _dataset(1, US, frame).save_as(files / "us.dcm", enforce_file_format=True)
    lake.init(tmp_path / "lake", key_file=tmp_path / "k.key")
    summary = ingest(tmp_path / "lake", [files], key_file=tmp_path / "k.key")
    assert summary.ingested == 1
    row = lake.open(tmp_path / "lake", key_file=tmp_path / "k.key").sql("SELECT pixel_phi_reason FROM instances")
    assert row["pixel_phi_reason"].to_list() == ["identifier_in_text"]  # it was read
    assert len(ocr_read._readings) == 0 and len(ocr._frames_found) == 0


def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    calls: list[tuple[int, ...]] = []
    real = ocr_read._read

    def counted(crop: np.ndarray, binary: bool, height: int) -> tuple[str, float]:
        calls.append(crop.shape)
        return real(crop, binary, height)

    monkeypatch.setattr(ocr_read, "_read", counted)
    ocr_read.forget_readings()
    return calls


def _screen_line() -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("L", (320, 120), 0)
    font = ImageFont.truetype(str(text_corpus.fonts()[0]), 14)
    ImageDraw.Draw(im).text((10, 40), "DOE JANE 4711 1961", font=font, fill=255)
    return np.asarray(im).copy()


def test_an_equal_frame_is_not_searched_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """What was found in a frame is kept by its pixels (a screen saved twice in a series) until
    forget_readings: equal pixels are neither searched nor read again, and give the same lines."""
    calls = _counting_reads(monkeypatch)
    frame = _screen_line()
    first = ocr.find_text(frame)
    assert first and calls
    searched = []
    monkeypatch.setattr(ocr, "_find_text", lambda grey: searched.append(grey) or [])
    reads = len(calls)
    assert ocr.find_text(frame.copy()) == first and not searched and len(calls) == reads
    other = frame.copy()
    other[0, 0] = 1
    assert ocr.find_text(other) == [] and len(searched) == 1  # other pixels: searched
    ocr_read.forget_readings()
    assert ocr.find_text(frame) == [] and len(searched) == 2  # forgotten: searched again


def test_a_line_another_source_found_before_is_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A candidate mostly inside a line already read (the same line seen by a later source, a row
    taller) is part of that line: it is masked with it and not read again."""
    frame = _screen_line()
    maps = ocr_sources.Maps.of(frame)
    first = next(iter(ocr_sources.tophat_sources(frame, maps.strokes)))
    (line,) = [first.line_of(box) for box in first.candidates()]
    x0, y0, x1, y1 = line
    taller = ocr_sources.Source(frame, first.strokes, [(x0, y0, x1, y1 + 1)])
    monkeypatch.setattr(ocr_sources, "sources", lambda grey, maps: iter([first, taller]))
    calls = _counting_reads(monkeypatch)
    found = ocr._find_lines(frame, maps)
    assert len(calls) == 1 and found[0].confidence > 0 and found[0].text  # the first source's line, read
    assert len(found) == 2 and found[1].confidence == 0.0  # the taller one: masked, not read
    fx0, fy0, fx1, fy1 = found[1].box
    assert fy0 <= y0 and fy1 >= y1 + 1 and fx0 <= x0 and fx1 >= x1


def test_the_turned_pass_reads_nothing_inside_the_lines_found_across(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turned a quarter, a line of text found across is strokes standing on end: its candidates and
    its text-like tiles are the same text, already masked, and are not read again."""
    frame = np.ascontiguousarray(np.rot90(_screen_line()))  # the line written up and down
    maps = ocr_sources.Maps.of(frame)
    calls = _counting_reads(monkeypatch)
    ocr._find_lines(frame, maps)
    assert calls  # seen alone, its strokes are candidates, read
    rows, cols = frame.shape
    calls.clear()
    ocr_read.forget_readings()
    ocr._find_lines(frame, maps, [ocr.TextBox((0, 0, cols, rows), 90.0, "DOE JANE")])
    assert calls == []
