"""Lines shaped like small text that Tesseract cannot read are masked unread (lake.deid.text_like):
the three 8-9 px lines on speckle that every reader missed in benchmarks/ocr.py's corpus, and
nothing in clean frames of any kind."""

from __future__ import annotations

import numpy as np
import pytest

from lake.deid import ocr, ocr_sources, text_like
from lake.deid.pixels import PixelPolicy, assess, decide
from lake.pixels.decode import DecodedPixels
from lake.testing import text_corpus

needs_fonts = pytest.mark.skipif(not text_corpus.fonts(), reason="no DejaVu fonts (Debian fonts-dejavu-core)")
needs_ocr = pytest.mark.skipif(not ocr.available(), reason=f"OCR unavailable: {ocr.unavailable_reason()}")

MISSED = (155, 315, 345)  # benchmarks/ocr.py, seed 2024: 8-9 px on speckle, read by no source


@pytest.fixture(scope="module")
def images() -> list[text_corpus.TextImage]:
    return text_corpus.corpus(seed=2024, count=MISSED[-1] // 2 + 1)


def test_a_one_pixel_stroke_is_thin_and_grain_is_not() -> None:
    frame = np.full((20, 40), 60, dtype=np.uint8)
    frame[5, 2:30] = 200  # a stroke one pixel tall: a ridge down
    frame[8:18, 10] = 10  # one pixel wide, darker: a ridge across
    frame[12:14, 20:22] = 200  # a grain of 2 x 2 px
    frame[0:4, 32:40] = 150  # a flat region
    thin = text_like.thin_pixels(frame)
    assert thin[5, 2:30].all() and thin[8:18, 10].all()
    assert not thin[12:14, 20:22].any() and not thin[0:4, 32:40].any()
    assert not thin[15:20, 25:40].any()  # the flat ground


def test_join_merges_touching_tiles_only() -> None:
    joined = text_like._join([(0, 0, 48, 8), (24, 4, 72, 12), (200, 0, 248, 8)])
    assert sorted(joined) == [(0, 0, 72, 12), (200, 0, 248, 8)]


def _centre_covered(boxes: list[tuple[int, int, int, int]], ink: np.ndarray) -> bool:
    ys, xs = np.nonzero(ink)
    return any(x0 <= xs.mean() < x1 and y0 <= ys.mean() < y1 for x0, y0, x1, y1 in boxes)


@needs_fonts
@pytest.mark.parametrize("n", MISSED)
def test_small_text_on_speckle_is_found_as_text_like(images: list[text_corpus.TextImage], n: int) -> None:
    image, clean = images[n], images[n - 1]
    assert image.kind == "US" and image.ink is not None and image.size <= 9 and clean.ink is None
    found = text_like.text_like_lines(image.pixels, ocr_sources.stand_out(image.pixels))
    assert _centre_covered(found, image.ink)
    assert text_like.text_like_lines(clean.pixels, ocr_sources.stand_out(clean.pixels)) == []


@needs_fonts
def test_clean_frames_of_every_kind_are_not_text_like() -> None:
    rng = np.random.default_rng(99)  # not the benchmark's seeds
    for kind in text_corpus.KINDS:
        for _ in range(4):
            frame = text_corpus.background(rng, kind)
            for grey in (frame, np.ascontiguousarray(np.rot90(frame))):
                assert text_like.text_like_lines(grey, ocr_sources.stand_out(grey)) == [], kind


@needs_fonts
@needs_ocr
def test_an_unreadable_line_is_masked_and_the_verdict_says_text(images: list[text_corpus.TextImage]) -> None:
    from tests.deid.test_ocr import US, _dataset

    image = images[345]
    assert image.ink is not None
    ds = _dataset(345, US, image.pixels)
    d = decide(ds, DecodedPixels(frames=image.pixels[np.newaxis].copy(), status="stored"),
               PixelPolicy.MASK_OR_QUARANTINE, assess(ds))  # fmt: skip
    assert d.status == "stored" and d.frames is not None and d.reason == "masked:ocr"
    assert (d.frames[0][image.ink] == 0).all()
    assert d.phi.reason in ("text_found", "identifier_in_text") and d.phi.masked_fraction < 0.05


def test_a_line_found_alone_grows_by_half_a_tile_within_the_frame() -> None:
    assert text_like.grown((100, 40, 148, 48), 512, 512) == (76, 36, 172, 52)
    assert text_like.grown((10, 2, 500, 10), 12, 510) == (0, 0, 510, 12)
