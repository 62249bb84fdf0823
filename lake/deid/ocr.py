"""Finding burned-in text in pixels: candidate text lines from four sources, confirmed by Tesseract.

Tesseract alone reads a whole medical image poorly (speckle and anatomy become hundreds of
low-confidence "words", small text on texture is missed), so detection has four steps, on the
frame windowed to its own display range (8 bits), once across and once turned a quarter:

1. *candidates* from four sources: a top-hat of each polarity (bright text, dark text) at two
   contrasts (:data:`CONTRASTS`) keeps strokes thinner than the structuring element; regions
   of one colour (burned-in text is drawn in one, texture and speckle are not) standing out from
   the median around them; and the pixels of a colour drawn in a tile (:data:`INK_TILE`), which
   the tile's histogram shows as a peak over the values beside it: text on speckle, whose thin
   antialiased strokes break into pieces too small for the second source; and the same in tiles
   one small line tall at a lower count (:func:`_line_ink_source`: 8-16 px text on speckle, read
   as nearness to its colour, with eight letters or digits). A horizontal closing
   joins the strokes of a line; groups shaped like a line of text (height 6-64 px, at least twice
   as wide as tall, partly filled) are candidates;
2. *confirmation*: each candidate, scaled to about 40 px tall, is read by Tesseract as one line
   (its strokes, its grey values; for the colour sources every pixel of the line's colour, specks
   removed, and for the third also smoothed); it is text when Tesseract reads four letters or
   digits with a mean word confidence of at least :data:`MIN_CONFIDENCE` (three at
   :data:`SURE_CONFIDENCE`; a drawn colour is rare enough to need five at :data:`INK_CONFIDENCE`),
   and, below :data:`SURE_CONFIDENCE`, reads much the same when read again at two other scales
   (:func:`_read_again`: Tesseract's letters for a blob or speckle change with the scale);
3. *completion*: a line read grows along its row by the strokes of its own colour, and once a
   frame has a line, the candidates beside it on its row are lines too, read or not; then each
   line grows over the columns of its row band where something stands out while the rows above
   and below are quiet (:func:`_extend`: a word too faint or too near its ground's colour to be
   found, between or beside words read): recall does not depend on Tesseract reading every word.
   :func:`pad` pads each line by about a character;
4. *decision*: a line shaped like small text (one-pixel strokes of one value filling a tile one
   line tall) that none of the above read is masked unread (:mod:`lake.deid.text_like`): at 8-9 px
   on speckle Tesseract reads nothing even given the exact box.

benchmarks/ocr.py (200 synthetic pairs, seed 2024, the corpus the thresholds were tuned on;
2026-12-02): every visible text pixel masked in 100% of text images (98.5% without step 4, 97.0%
without the fourth source too, :func:`_line_ink_source`), 2% of clean images altered (4 of 200,
as before: the edge of an ultrasound fan at the frame's border, an MR blob); hard cases 93%
(inverse 75%). On a held-out corpus (seed 2031): 98.5% and 3.0% (ultrasound 8-16 px missed; CT
blobs and speckle confirmed as text). Median 0.41 s per 512x512 frame on a shared core before the
fourth source, which costs 1.13 times that; step 4 costs 1.06 times (timed in turn on 20 images).
Still missed: text darker than a dark ground (or brighter than a bright one), clipped to its ground.

The text read stays in memory (:class:`TextBox.text`, hidden from ``repr``): the caller may compare
it with the header's identifiers to rank the risk, and must never store it.

Needs the ``ocr`` extra (``tesserocr``, ``opencv-python-headless``) and Tesseract's English data
(Debian: ``tesseract-ocr``, ``tesseract-ocr-eng``). :func:`available` says whether both are there;
:func:`find_text` raises :class:`OcrUnavailableError` when they are not.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lake.errors import OcrUnavailableError

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)

MIN_CONFIDENCE = 40.0  # mean Tesseract word confidence (0-100) for a candidate to count as text
SURE_CONFIDENCE = 85.0  # enough for a line of one character fewer ("411")
MIN_CHARACTERS = 4  # letters or digits read in the candidate (an identifier has more)
TOPHAT_SIZE = 15  # px: strokes thinner than this are kept (text up to ~60 px tall)
CONTRASTS = (48, 96)  # grey levels (of 255) a stroke stands out from its surroundings (low, high)
FLAT_TOLERANCE = 1  # grey levels: neighbours this close are one colour (burned-in text is drawn in one)
FLAT_REACH = 17  # px: pieces of one colour this far apart are joined into a line
FLAT_MIN_AREA = 10  # px: a region of one colour this large may be (part of) a character
FLAT_CONTRAST = 20  # grey levels: a flat region stands out from the median around it
LINE_CONTRAST = 10  # grey levels: the same for the rest of a line already read
INK_TOLERANCE = 6  # grey levels: the strokes of a confirmed line's own colour
MIN_HEIGHT, MAX_HEIGHT = 6, 64  # px: text lines looked for (8 px text is 6-10 px of ink)
READ_HEIGHT = 40  # px: candidates are scaled to about this height before Tesseract reads them
MAX_CANDIDATES = 400  # per frame and polarity: a frame with more is read as a whole (speckle)
INK_TILE = (16, 48)  # px (rows, cols): the tiles whose histograms show a colour drawn in them
INK_LEAST = 30  # px of one colour (+-1) in a tile beyond INK_RATIO times what its neighbours have
INK_RATIO = 4.0
INK_CONFIDENCE = 20.0  # a line of one drawn colour is rare (0.2 per clean ultrasound frame): read
QUIET_CONTRAST = 12  # grey levels from the median around: a pixel of a character on a quiet ground
INK_CHARACTERS = 5  # at this confidence with this many letters or digits (edges clipped at white: 4)
LINE_INK_TILE = (12, 96)  # px: the fourth source's tiles, one small line tall (8-16 px text on speckle)
LINE_INK_LEAST = 16  # px of the drawn colour in such a tile (8-11 px text has 6-51 in its whole box)
LINE_INK_ASPECT = 5.0  # its candidates are this many heights wide (a line of about 8 characters)
LINE_INK_CHARACTERS = 8  # read with this many letters or digits (speckle read so: 6 at most in 40 frames)
LINE_INK_CONFIDENCE = 30.0  # at this confidence: the count of characters is what tells text from speckle
NEAR_GAIN = 4  # the fourth source reads how near each pixel is to the ink, 4 levels of 255 per level
RECHECK_HEIGHTS = (28, 60)  # px: a reading below SURE_CONFIDENCE is read again at these heights
AGREEMENT = 0.5  # and each reading again has at least this share of its letters and digits in common
STABLE_CHARACTERS = 6  # a reading below MIN_CONFIDENCE counts with this many letters or digits
STABLE_AGREEMENT = 0.8  # read again at each of RECHECK_HEIGHTS with this share in common
CHARACTER_HEIGHT = 0.4  # a binary crop's pieces this share of its height tall are characters (_in_pieces)

_TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
)


@dataclass(frozen=True)
class TextBox:
    """A line of text found in a frame: its box in pixels, Tesseract's confidence, the text read."""

    box: Box
    confidence: float
    text: str = field(default="", repr=False, compare=False)  # in memory only: never store it


def tessdata_dir() -> str | None:
    """The folder holding Tesseract's ``eng.traineddata`` (``TESSDATA_PREFIX`` first), or None."""
    candidates = [os.environ.get("TESSDATA_PREFIX", ""), *_TESSDATA_DIRS]
    for folder in candidates:
        if folder and (Path(folder) / "eng.traineddata").is_file():
            return folder.rstrip("/") + "/"
    return None


@cache
def unavailable_reason() -> str | None:
    """Why OCR cannot run here (a sentence with the fix), or None when it can."""
    try:
        import cv2  # noqa: F401
        import tesserocr  # noqa: F401
    except ImportError as exc:
        return f"the OCR libraries are not installed ({exc.name}): pip install 'lake[ocr]'"
    if tessdata_dir() is None:
        return (
            "Tesseract's English language data (eng.traineddata) was not found: "
            "apt-get install tesseract-ocr tesseract-ocr-eng, or set TESSDATA_PREFIX to its folder"
        )
    return None


def available() -> bool:
    """Whether :func:`find_text` can run (the ``ocr`` extra and Tesseract's English data are there)."""
    return unavailable_reason() is None


_local = threading.local()


def _api() -> Any:
    """This thread's Tesseract instance (created once: loading the model takes ~0.1 s)."""
    api = getattr(_local, "api", None)
    if api is None:
        reason = unavailable_reason()
        if reason is not None:
            raise OcrUnavailableError(reason)
        from tesserocr import OEM, PSM, PyTessBaseAPI

        api = PyTessBaseAPI(path=tessdata_dir(), lang="eng", psm=PSM.SINGLE_LINE, oem=OEM.LSTM_ONLY)
        api.SetVariable("debug_file", "/dev/null")  # leptonica/tesseract diagnostics are not ours to print
        _local.api = api
    return api


def display_frame(frame: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """One frame (rows, cols[, samples]) of stored or modality values -> uint8 grey, as shown.

    ``window`` (center, width) is the image's own VOI window; without one, the frame's full range
    (burned-in text is usually drawn at an extreme value, which a percentile window would clip away
    only if it were rare; the full range keeps it).
    """
    values = frame
    if values.ndim == 3:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)[: values.shape[-1]]
        values = values[..., :3].astype(np.float32) @ weights
    values = values.astype(np.float32, copy=False)
    if window is not None and window[1] > 0:
        low, high = window[0] - window[1] / 2, window[0] + window[1] / 2
    else:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.clip((values - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)


@dataclass
class _Source:
    """One way of seeing a frame's text: the image with text bright, its strokes (the binary mask of
    what may be ink) and their groups (strokes joined along a line; line-shaped or not)."""

    image: np.ndarray
    strokes: np.ndarray
    groups: list[Box]
    read_grey: bool = True  # also read the grey crop (the strokes of a flat source are already clean)
    min_confidence: float = MIN_CONFIDENCE
    min_characters: int = MIN_CHARACTERS
    min_aspect: float = 2.0  # a candidate is this many times as wide as tall (2: three characters)
    read_near: bool = False  # read the crop as nearness to the line's ink (:func:`_near_ink`)

    def candidates(self) -> list[Box]:
        out = []
        for x0, y0, x1, y1 in self.groups:
            w, h = x1 - x0, y1 - y0
            if not MIN_HEIGHT <= h <= MAX_HEIGHT or w < self.min_aspect * h:
                continue
            ink = int(np.count_nonzero(self.strokes[y0:y1, x0:x1]))
            if 0.08 * w * h <= ink <= 0.9 * w * h:
                out.append((x0, y0, x1, y1))
        return out[:MAX_CANDIDATES]

    def line_of(self, box: Box) -> Box:
        """``box`` grown by the groups beside it on the same line (words and characters too short
        to be read alone: "ID", a lone initial), gaps up to twice the line's height."""
        x0, y0, x1, y1 = box
        h, top, bottom = y1 - y0, y0, y1  # the row band of the line read: it grows along it only
        grown = True
        while grown:
            grown = False
            for gx0, gy0, gx1, gy1 in self.groups:
                overlap = min(bottom, gy1) - max(top, gy0)
                if overlap < 0.5 * min(h, gy1 - gy0) or gy1 - gy0 > 1.5 * h:
                    continue
                gap = max(gx0 - x1, x0 - gx1)
                if gap <= 2 * h and not (gx0 >= x0 and gx1 <= x1 and gy0 >= y0 and gy1 <= y1):
                    x0, y0, x1, y1 = min(x0, gx0), min(y0, gy0), max(x1, gx1), max(y1, gy1)
                    grown = True
        return x0, y0, x1, y1


def _groups(binary: np.ndarray, reach: int = 9) -> list[Box]:
    """Boxes of the strokes joined along a line (gaps up to ``reach`` px wide)."""
    import cv2

    join = cv2.getStructuringElement(cv2.MORPH_RECT, (reach, 3))
    lines = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, join)
    _count, _labels, stats, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
    return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h, _area in stats[1:]]


def _tophat_sources(grey: np.ndarray) -> Iterator[_Source]:
    """Bright text, then dark text, at each contrast of :data:`CONTRASTS`: a top-hat keeps thin
    strokes standing out from their surroundings by that much."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (TOPHAT_SIZE, TOPHAT_SIZE))
    for image in (grey, 255 - grey):
        strokes = cv2.morphologyEx(image, cv2.MORPH_TOPHAT, kernel)
        for contrast in CONTRASTS:
            _, binary = cv2.threshold(strokes, contrast, 255, cv2.THRESH_BINARY)
            # specks of 1-3 px (noise, speckle) are no part of a character, even of 8 px text
            _count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
            small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < 4)
            if small.size:
                binary[np.isin(labels, small)] = 0
            yield _Source(image, binary, _groups(binary))


def _flat_labels(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected regions of one grey value (4-connected neighbours within :data:`FLAT_TOLERANCE`):
    per pixel its region's label, and per label (area, height, width)."""
    import cv2

    g = grey.astype(np.int16)
    rows, cols = g.shape
    # a grid twice as fine: pixels at even places, a link between two neighbours where they are equal
    grid = np.zeros((2 * rows - 1, 2 * cols - 1), dtype=np.uint8)
    grid[::2, ::2] = 1
    grid[::2, 1::2] = np.abs(g[:, 1:] - g[:, :-1]) <= FLAT_TOLERANCE
    grid[1::2, ::2] = np.abs(g[1:] - g[:-1]) <= FLAT_TOLERANCE
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grid, connectivity=8)
    labels = labels[::2, ::2]
    area = np.bincount(labels.ravel(), minlength=count)
    shape = np.stack([area, (stats[:, cv2.CC_STAT_HEIGHT] + 1) // 2, (stats[:, cv2.CC_STAT_WIDTH] + 1) // 2], 1)
    return labels, shape


def _apart(grey: np.ndarray) -> np.ndarray:
    """How far each pixel stands out from the median around it (grey levels, uint8)."""
    import cv2

    ground = cv2.medianBlur(grey, 2 * (TOPHAT_SIZE // 2) + 1)
    return cv2.absdiff(grey, ground)


def _flat_source(grey: np.ndarray, apart: np.ndarray) -> _Source:
    """Strokes of one grey value: burned-in text is drawn in one colour, which texture and speckle
    (whose neighbours differ) are not; regions too small, too large or too filled are dropped."""

    labels, shape = _flat_labels(grey)
    area, h, w = shape.T
    keep = (area >= FLAT_MIN_AREA) & (h <= MAX_HEIGHT) & (w <= 4 * MAX_HEIGHT) & (area <= 0.8 * h * w + 1)
    # and standing out from the ground around it (flat noise clipped at black is no text)
    binary = (keep[labels] & (apart >= FLAT_CONTRAST)).astype(np.uint8) * 255
    # the strokes of one colour on speckle are found in pieces: joined from further apart
    return _Source(grey, binary, _groups(binary, FLAT_REACH), read_grey=False)


@lru_cache(maxsize=8)  # a few frame shapes (and each turned a quarter); 4 grids of int64 per shape
def _tiles(rows: int, cols: int, th: int, tw: int) -> tuple[tuple[np.ndarray, int], ...]:
    """Per pixel the index of its tile (``th`` x ``tw`` px) in four grids offset by half a tile."""
    yy, xx = np.mgrid[:rows, :cols]
    out = []
    for oy in (0, th // 2):
        for ox in (0, tw // 2):
            across = (cols + ox) // tw + 1
            tile = ((yy + oy) // th) * across + (xx + ox) // tw
            out.append((tile.astype(np.int64), int(tile.max()) + 1))
    return tuple(out)


def _ink_source(
    grey: np.ndarray, apart: np.ndarray, tile_shape: tuple[int, int] = INK_TILE, least: int = INK_LEAST
) -> _Source:
    """Pixels of a colour drawn in a tile: text on speckle or texture is found by its colour, which
    one tile's histogram shows as a peak (:data:`INK_LEAST` pixels of one value +-1 standing out
    from their ground, :data:`INK_RATIO` times the values beside it) where the ground has every
    value a few times. Its thin, antialiased strokes break into pieces too small for the flat source."""
    values = np.arange(256)
    stand = apart >= FLAT_CONTRAST
    g = grey.astype(np.int64)
    binary = np.zeros(grey.shape, dtype=bool)
    for tile, count in _tiles(*grey.shape, *tile_shape):
        hist = np.bincount((tile * 256 + g)[stand], minlength=count * 256).reshape(count, 256)
        total = np.pad(np.cumsum(hist, axis=1), ((0, 0), (1, 0)))

        def window(a: int, b: int, total: np.ndarray = total) -> tuple[np.ndarray, np.ndarray]:
            lo, hi = np.clip(values + a, 0, 256), np.clip(values + b, 0, 256)
            return total[:, hi] - total[:, lo], hi - lo

        peak, _ = window(-1, 2)
        below, n_below = window(-9, -2)
        above, n_above = window(3, 10)
        beside = (below + above) * 3.0 / np.maximum(n_below + n_above, 1)
        score = peak - INK_RATIO * beside
        colour = score.argmax(axis=1)
        drawn = score[np.arange(count), colour] >= least
        binary |= drawn[tile] & (np.abs(g - colour[tile]) <= FLAT_TOLERANCE) & stand
    strokes = binary.astype(np.uint8) * 255
    lines = _groups(strokes, FLAT_REACH)
    return _Source(grey, strokes, lines, read_grey=False, min_confidence=INK_CONFIDENCE, min_characters=INK_CHARACTERS)


def _line_ink_source(grey: np.ndarray, apart: np.ndarray) -> _Source:
    """The colour drawn in tiles one small line tall (:data:`LINE_INK_TILE`), at a lower count
    (:data:`LINE_INK_LEAST`): 8-16 px text on speckle, most of whose pixels are antialiased edge,
    so only a few dozen are the drawn colour. Speckle makes such peaks too (about 7 candidates in a
    clean ultrasound frame), so only long lines are read (:data:`LINE_INK_ASPECT`), as nearness to
    their colour (:func:`_near_ink`), and count with :data:`LINE_INK_CHARACTERS` letters or digits."""
    source = _ink_source(grey, apart, LINE_INK_TILE, LINE_INK_LEAST)
    source.min_confidence, source.min_characters = LINE_INK_CONFIDENCE, LINE_INK_CHARACTERS
    source.min_aspect, source.read_near = LINE_INK_ASPECT, True
    return source


def _sources(grey: np.ndarray, apart: np.ndarray) -> Iterator[_Source]:
    yield from _tophat_sources(grey)
    yield _flat_source(grey, apart)
    yield _ink_source(grey, apart)
    yield _line_ink_source(grey, apart)


def _near_ink(crop: np.ndarray, ink: int) -> np.ndarray:
    """How near each pixel of ``crop`` is to ``ink`` (255 at the ink, :data:`NEAR_GAIN` less per
    grey level away), scaled 3 times and median-filtered (5x5): an antialiased stroke on speckle
    keeps its shape while the speckle around it, of every value, turns to scattered specks."""
    import cv2

    near = np.clip(255 - np.abs(crop.astype(np.int16) - ink) * NEAR_GAIN, 0, 255).astype(np.uint8)
    return cv2.medianBlur(cv2.resize(near, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC), 5)


def _read(crop: np.ndarray, binary: bool, height: int = READ_HEIGHT) -> tuple[str, float]:
    """Tesseract's reading of one crop (text bright) as one line, scaled to about ``height`` px:
    (text, mean word confidence)."""
    import cv2
    from PIL import Image

    scale = max(1.0, height / max(crop.shape[0], 1))
    ink = 255 - crop  # Tesseract reads dark text on a light ground best
    if scale > 1:
        ink = cv2.resize(ink, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    pad = max(8, ink.shape[0] // 3)
    ground = 255 if binary else int(np.median(ink))
    ink = cv2.copyMakeBorder(ink, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=ground)
    api = _api()
    api.SetImage(Image.fromarray(ink))
    text = (api.GetUTF8Text() or "").strip()
    confidences = [c for c in api.AllWordConfidences() if c >= 0]
    return text, (float(np.mean(confidences)) if confidences else 0.0)


def _is_text(
    text: str, confidence: float, least: float = MIN_CONFIDENCE, characters_least: int = MIN_CHARACTERS
) -> bool:
    characters = sum(c.isalnum() for c in text)
    if characters >= characters_least:
        return confidence >= least
    if characters_least > MIN_CHARACTERS:
        return False
    return characters == MIN_CHARACTERS - 1 and confidence >= SURE_CONFIDENCE


def _read_again(crop: np.ndarray, binary: bool, text: str, agreement: float = AGREEMENT) -> bool:
    """Whether ``crop`` read at each of :data:`RECHECK_HEIGHTS` gives much the same letters and
    digits as ``text`` (``agreement``): a text's reading does not depend on its scale, while
    what Tesseract makes of a blob or of speckle changes with it. benchmarks/README.md (OCR,
    2026-12-02): 7 of the 10 clean images the readers altered on two corpora read so at a low
    confidence (4-6 letters in a crop 6-8 px tall), and each read again at 28 or 60 px gave
    other letters."""
    from difflib import SequenceMatcher

    key = [c for c in text.upper() if c.isalnum()]
    for height in RECHECK_HEIGHTS:
        again = [c for c in _read(crop, binary, height)[0].upper() if c.isalnum()]
        if SequenceMatcher(None, key, again, autojunk=False).ratio() < agreement:
            return False
    return True


def _in_pieces(crop: np.ndarray, binary: bool) -> bool:
    """Whether a binary crop holds two pieces or more at least :data:`CHARACTER_HEIGHT` of its
    height tall (characters; a grey crop is not judged). benchmarks/README.md (OCR, 2026-12-03):
    the clean MR frames altered on the held-out seed 2041 were one blob each, the clipped white
    edge of a disc, read as a few letters at a low confidence the same at every scale."""
    if not binary:
        return True
    import cv2

    _count, _labels, stats, _ = cv2.connectedComponentsWithStats((crop > 0).astype(np.uint8), connectivity=8)
    tall = stats[1:, cv2.CC_STAT_HEIGHT] >= CHARACTER_HEIGHT * crop.shape[0]
    return int(np.count_nonzero(tall)) >= 2


def _confirmed(crop: np.ndarray, binary: bool, text: str, confidence: float, source: _Source, alike: bool) -> bool:
    """Whether a candidate's reading makes it a line of text. A reading :func:`_is_text` accepts
    counts at :data:`SURE_CONFIDENCE`, or beside a line already read (``alike``), or when the crop
    is in pieces (:func:`_in_pieces`) and reads much the same at other scales (:func:`_read_again`).
    A reading of :data:`STABLE_CHARACTERS` letters or digits below the confidence asked counts
    beside a line read, or when it reads the same (:data:`STABLE_AGREEMENT`) at other scales:
    benchmarks/README.md (OCR, 2026-12-03): on seeds 2024 and 2025, readings of five or more
    characters agreeing so at 28 and 60 px came from about 200 crops of text and none of clean
    images, and Tesseract reads text on a busy ground at a confidence near 0."""
    if _is_text(text, confidence, source.min_confidence, source.min_characters):
        if confidence >= SURE_CONFIDENCE or alike:
            return True
        return _in_pieces(crop, binary) and _read_again(crop, binary, text)
    if sum(c.isalnum() for c in text) < max(STABLE_CHARACTERS, source.min_characters):
        return False
    return alike or _read_again(crop, binary, text, STABLE_AGREEMENT)


def _ink_value(grey: np.ndarray, strokes: np.ndarray, box: Box) -> int | None:
    x0, y0, x1, y1 = box
    values = grey[y0:y1, x0:x1][strokes[y0:y1, x0:x1] > 0]
    # the most common value: burned-in text is drawn in one colour, its antialiased edges are not
    return int(np.bincount(values).argmax()) if values.size else None


def _colour_mask(crop: np.ndarray, ink: int) -> np.ndarray:
    """The pixels of ``ink``'s colour in ``crop``, without the specks of 1-4 px (speckle of the
    same value; a piece of a character is larger)."""
    import cv2

    mask = ((np.abs(crop.astype(np.int16) - ink) <= FLAT_TOLERANCE + 1) * 255).astype(np.uint8)
    _count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < 5)
    small = small[small > 0]
    if small.size:
        mask[np.isin(labels, small)] = 0
    return mask


def _smooth(mask: np.ndarray) -> np.ndarray:
    """A binary crop scaled to :data:`READ_HEIGHT` and blurred before thresholding: the jagged,
    broken strokes of one colour on speckle become strokes Tesseract reads."""
    import cv2

    scale = max(1.0, READ_HEIGHT / max(mask.shape[0], 1))
    up = cv2.resize(mask, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    up = cv2.GaussianBlur(up, (0, 0), scale / 2)
    return ((up > 80) * 255).astype(np.uint8)


def _complete(grey: np.ndarray, apart: np.ndarray, box: Box, ink: int | None) -> Box:
    """A confirmed line grown along its row band by the strokes of its own ink value (a word on a
    brighter ground or across speckle that the sources found apart or not at all)."""
    import cv2

    if ink is None:
        return box
    x0, y0, x1, y1 = box
    h = y1 - y0
    top, bottom = max(0, y0 - h // 4), min(grey.shape[0], y1 + h // 4)
    same = (
        (np.abs(grey[top:bottom].astype(np.int16) - ink) <= INK_TOLERANCE) & (apart[top:bottom] >= LINE_CONTRAST)
    ).astype(np.uint8)
    _count, _labels, stats, _ = cv2.connectedComponentsWithStats(same, connectivity=8)
    parts = [
        (int(x), int(x + w))
        for x, _y, w, ch, area in stats[1:]
        if 0.35 * h <= ch <= 1.3 * h and area >= 3 and w <= 2 * h
    ]
    grown = True
    while grown:
        grown = False
        for px0, px1 in parts:
            if px0 < x0 <= px1 + h or px1 > x1 >= px0 - h:
                x0, x1 = min(x0, px0), max(x1, px1)
                grown = True
    return x0, y0, x1, y1


def _extend(apart: np.ndarray, box: Box) -> Box:
    """``box`` grown along its row band over the columns where something stands out inside the band
    (:data:`QUIET_CONTRAST`) while the rows above and below it are quiet: the words of a line too
    faint or too close to their ground's colour to be found (a name drawn across a ground that
    changes under it), gaps up to twice the line's height. On speckle or anatomy nothing is quiet and
    the line does not grow."""
    x0, y0, x1, y1 = box
    h = y1 - y0
    rows, cols = apart.shape
    busy = apart >= QUIET_CONTRAST
    inside = busy[y0:y1].sum(axis=0)
    above = busy[max(0, y0 - h) : max(0, y0 - 1)]
    below = busy[min(rows, y1 + 1) : min(rows, y1 + h)]
    around = above.sum(axis=0) + below.sum(axis=0)
    width = above.shape[0] + below.shape[0]
    text_like = (inside >= 2) & (around * h <= inside * max(width, 1) // 4)
    reach = max(4, 2 * h)
    for step in (1, -1):
        edge = x1 - 1 if step == 1 else x0
        last, c = edge, edge + step
        while 0 <= c < cols and abs(c - last) <= reach and abs(c - edge) <= 40 * h:
            if text_like[c]:
                last = c
            c += step
        if step == 1:
            x1 = last + 1
        else:
            x0 = last
    return x0, y0, x1, y1


def find_text(grey: np.ndarray) -> list[TextBox]:
    """Lines of text in one uint8 grey frame (see :func:`display_frame`), written across or up
    and down (the frame turned a quarter); raises OcrUnavailableError.

    A candidate Tesseract reads as text is a line (its text kept in memory); once a frame has one,
    every other candidate of the same kind (a line as tall, on the same row or in the same ink) is
    a line too, read or not (confidence 0): recall must not depend on Tesseract reading each word.
    """
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError(f"find_text needs one uint8 grey frame, got {grey.dtype} {grey.shape}: use display_frame")
    _api()  # raises OcrUnavailableError before any work
    found = _find_lines(grey)
    cols = grey.shape[1]
    for line in _find_lines(np.ascontiguousarray(np.rot90(grey))):  # turned: a row is a column
        x0, y0, x1, y1 = line.box
        found.append(TextBox((cols - y1, x0, cols - y0, x1), line.confidence, line.text))
    return found


def _find_lines(grey: np.ndarray) -> list[TextBox]:
    """The lines written across ``grey`` (see :func:`find_text`)."""
    found: list[TextBox] = []
    unread: list[tuple[Box, int | None]] = []
    apart = _apart(grey)
    for source in _sources(grey, apart):
        for box in source.candidates():
            line = source.line_of(box)
            ink = _ink_value(grey, source.strokes, box)
            if any(_inside(box, f.box) for f in found):
                continue  # a part of a line already read
            x0, y0, x1, y1 = box
            if source.read_near and ink is not None:  # a row or two more: the line's antialiased edges
                crops = [(_near_ink(grey[max(0, y0 - 2) : y1 + 2, x0:x1], ink), False)]
            elif source.read_grey:
                crops = [(source.strokes[y0:y1, x0:x1], True), (source.image[y0:y1, x0:x1], False)]
            elif ink is not None:  # every pixel of the line's own colour: the strokes a flat source missed too
                colour = _colour_mask(grey[y0:y1, x0:x1], ink)
                crops = [(colour, True)]
                if source.min_characters > MIN_CHARACTERS:  # thin pieces on speckle: smoothed too
                    crops.append((_smooth(colour), True))
            else:
                crops = []
            alike = bool(found) and _same_kind(line, found)
            for crop, binary in crops:
                text, confidence = _read(crop, binary)
                if _confirmed(crop, binary, text, confidence, source, alike):
                    found.append(TextBox(_complete(grey, apart, line, ink), confidence, text))
                    break
            else:
                unread.append((line, ink))
    if found:
        rest = [_complete(grey, apart, line, ink) for line, ink in unread if _same_kind(line, found)]
        found += [TextBox(box, 0.0) for box in rest]
    found += _unreadable_lines(grey, apart, found)
    return [TextBox(_extend(apart, line.box), line.confidence, line.text) for line in found]


def _unreadable_lines(grey: np.ndarray, apart: np.ndarray, found: list[TextBox]) -> list[TextBox]:
    """Lines shaped like small text that no source read (:mod:`lake.deid.text_like`): masked as a
    decision, read or not (what Tesseract reads of them is kept to rank the risk)."""
    from lake.deid.text_like import grown, text_like_lines

    out = []
    for box in text_like_lines(grey, apart):
        if any(_inside(box, f.box) for f in found):
            continue
        if not any(_overlaps(box, f.box) for f in found):  # found alone: maybe in some of its tiles only
            box = grown(box, *grey.shape)
        x0, y0, x1, y1 = box
        text, confidence = _read(grey[y0:y1, x0:x1], False)
        out.append(TextBox(box, confidence if _is_text(text, confidence) else 0.0, text))
    return out


def _same_kind(box: Box, lines: list[TextBox]) -> bool:
    """Whether a candidate not read as text is the rest of a line that was: as tall, on its row and
    beside it (further away, a candidate is as likely speckle, which ultrasound frames showed, and
    is not masked unread)."""
    x0, y0, x1, y1 = box
    h = y1 - y0
    for line in lines:
        lx0, ly0, lx1, ly1 = line.box
        lh = ly1 - ly0
        beside = max(x0 - lx1, lx0 - x1) <= 2 * lh  # a word gap or a few letters away
        if beside and 0.6 * lh <= h <= 1.6 * lh and min(y1, ly1) - max(y0, ly0) >= 0.5 * min(h, lh):
            return True
    return False


def _overlaps(box: Box, other: Box) -> bool:
    x0, y0, x1, y1 = box
    ox0, oy0, ox1, oy1 = other
    return x0 < ox1 and ox0 < x1 and y0 < oy1 and oy0 < y1


def _inside(box: Box, other: Box) -> bool:
    x0, y0, x1, y1 = box
    ox0, oy0, ox1, oy1 = other
    return x0 >= ox0 and y0 >= oy0 and x1 <= ox1 and y1 <= oy1


def pad(box: Box, rows: int, cols: int) -> Box:
    """``box`` grown along its line by one and a half times its short side (the line's height;
    about a wide character; at least 4 px) and across it by half the short side (at least 3 px),
    clipped to the frame: antialiased edges and a first or last letter found apart from its line
    are covered. benchmarks/ocr.py (2026-12-02): one and a half heights instead of one masked a
    wide first letter the line read had missed (recall 96.5% -> 97.0%; median masked area of a
    text image 2.9% -> 3.2%)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    along, across = max(4, (3 * min(w, h) + 1) // 2), max(3, (min(w, h) + 1) // 2)
    px, py = (along, across) if w >= h else (across, along)
    return max(0, x0 - px), max(0, y0 - py), min(cols, x1 + px), min(rows, y1 + py)
