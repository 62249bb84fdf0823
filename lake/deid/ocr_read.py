"""Reading a candidate line with Tesseract (one line, scaled to about :data:`READ_HEIGHT` px) and
deciding whether what was read is text (see :mod:`lake.deid.ocr`)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from lake.deid.ocr_sources import FLAT_TOLERANCE, MIN_CHARACTERS, MIN_CONFIDENCE, Source
from lake.errors import OcrUnavailableError

SURE_CONFIDENCE = 85.0  # enough for a line of one character fewer ("411")
READ_HEIGHT = 40  # px: candidates are scaled to about this height before Tesseract reads them
NEAR_GAIN = 4  # the fourth source reads how near each pixel is to the ink, 4 levels of 255 per level
RECHECK_HEIGHTS = (28, 60)  # px: a reading below SURE_CONFIDENCE is read again at these heights
AGREEMENT = 0.5  # and each reading again has at least this share of its letters and digits in common
STABLE_CHARACTERS = 6  # a reading below MIN_CONFIDENCE counts with this many letters or digits
STABLE_AGREEMENT = 0.8  # read again at each of RECHECK_HEIGHTS with this share in common
CHARACTER_HEIGHT = 0.4  # a binary crop's pieces this share of its height tall are characters (in_pieces)

_TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
)


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


def api() -> Any:
    """This thread's Tesseract instance (created once: loading the model takes ~0.1 s)."""
    tesseract = getattr(_local, "api", None)
    if tesseract is None:
        reason = unavailable_reason()
        if reason is not None:
            raise OcrUnavailableError(reason)
        from tesserocr import OEM, PSM, PyTessBaseAPI

        tesseract = PyTessBaseAPI(path=tessdata_dir(), lang="eng", psm=PSM.SINGLE_LINE, oem=OEM.LSTM_ONLY)
        tesseract.SetVariable("debug_file", "/dev/null")  # leptonica/tesseract diagnostics are not ours to print
        _local.api = tesseract
    return tesseract


def near_ink(crop: np.ndarray, ink: int) -> np.ndarray:
    """How near each pixel of ``crop`` is to ``ink`` (255 at the ink, :data:`NEAR_GAIN` less per
    grey level away), scaled 3 times and median-filtered (5x5): an antialiased stroke on speckle
    keeps its shape while the speckle around it, of every value, turns to scattered specks."""
    import cv2

    near = np.clip(255 - np.abs(crop.astype(np.int16) - ink) * NEAR_GAIN, 0, 255).astype(np.uint8)
    return cv2.medianBlur(cv2.resize(near, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC), 5)


READINGS_KEPT = 2048  # readings kept by crop (:func:`read`), until forget_readings
_readings: OrderedDict[tuple[Any, ...], tuple[str, float]] = OrderedDict()
_stores: list[OrderedDict[Any, Any]] = [_readings]  # every store of what was read of a run's pixels
_readings_lock = threading.Lock()
T = TypeVar("T")


def store() -> OrderedDict[Any, Any]:
    """A new store of results read from pixels (:func:`kept`), emptied by :func:`forget_readings`."""
    new: OrderedDict[Any, Any] = OrderedDict()
    with _readings_lock:
        _stores.append(new)
    return new


def digest(pixels: np.ndarray) -> tuple[Any, ...]:
    """A key for equal pixels: their digest, shape and type."""
    return hashlib.blake2b(np.ascontiguousarray(pixels).data, digest_size=16).digest(), pixels.shape, pixels.dtype.str


def kept(place: OrderedDict[Any, Any], key: Any, compute: Callable[[], T], limit: int) -> T:
    """``compute()`` kept in ``place`` by ``key`` (the last ``limit`` of them), in memory only."""
    with _readings_lock:
        value = place.get(key)
        if value is not None:
            place.move_to_end(key)
            return cast(T, value)
    value = compute()
    with _readings_lock:
        place[key] = value
        while len(place) > limit:
            place.popitem(last=False)
    return value


def read(crop: np.ndarray, binary: bool, height: int = READ_HEIGHT) -> tuple[str, float]:
    """Tesseract's reading of one crop (text bright) as one line, scaled to about ``height`` px:
    (text, mean word confidence).

    A reading depends on the crop alone, so the process keeps its last :data:`READINGS_KEPT`
    readings by the crop's digest, in memory only, until :func:`forget_readings` (the end of each
    ingest): the overlays and screen labels of a series are the same pixels from one instance to
    the next (of the 174 readings asked for in an ingest of the shared archive's 11 Philips screens,
    132 were of distinct crops; 5 of the 11 frames equal one before, and are not searched again)."""
    return kept(_readings, (*digest(crop), binary, height), lambda: _read(crop, binary, height), READINGS_KEPT)


def forget_readings() -> None:
    """Drop the readings kept, and every other result kept from pixels (text read from a run's
    pixels does not outlive the run)."""
    with _readings_lock:
        for place in _stores:
            place.clear()


def _read(crop: np.ndarray, binary: bool, height: int) -> tuple[str, float]:
    import cv2

    scale = max(1.0, height / max(crop.shape[0], 1))
    ink = 255 - crop  # Tesseract reads dark text on a light ground best
    if scale > 1:
        ink = cv2.resize(ink, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    pad = max(8, ink.shape[0] // 3)
    ground = 255 if binary else int(np.median(ink))
    ink = cv2.copyMakeBorder(ink, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=ground)
    tesseract = api()
    rows, cols = ink.shape
    tesseract.SetImageBytes(np.ascontiguousarray(ink).tobytes(), cols, rows, 1, cols)
    text = (tesseract.GetUTF8Text() or "").strip()
    confidences = [c for c in tesseract.AllWordConfidences() if c >= 0]
    return text, (float(np.mean(confidences)) if confidences else 0.0)


def is_text(
    text: str, confidence: float, least: float = MIN_CONFIDENCE, characters_least: int = MIN_CHARACTERS
) -> bool:
    characters = sum(c.isalnum() for c in text)
    if characters >= characters_least:
        return confidence >= least
    if characters_least > MIN_CHARACTERS:
        return False
    return characters == MIN_CHARACTERS - 1 and confidence >= SURE_CONFIDENCE


def read_again(crop: np.ndarray, binary: bool, text: str, agreement: float = AGREEMENT) -> bool:
    """Whether ``crop`` read at each of :data:`RECHECK_HEIGHTS` gives much the same letters and
    digits as ``text`` (``agreement``): a text's reading does not depend on its scale, while
    what Tesseract makes of a blob or of speckle changes with it. benchmarks/README.md (OCR,
    2026-12-02): 7 of the 10 clean images the readers altered on two corpora read so at a low
    confidence (4-6 letters in a crop 6-8 px tall), and each read again at 28 or 60 px gave
    other letters."""
    from difflib import SequenceMatcher

    key = [c for c in text.upper() if c.isalnum()]
    for height in RECHECK_HEIGHTS:
        again = [c for c in read(crop, binary, height)[0].upper() if c.isalnum()]
        if SequenceMatcher(None, key, again, autojunk=False).ratio() < agreement:
            return False
    return True


def in_pieces(crop: np.ndarray, binary: bool) -> bool:
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


def confirmed(crop: np.ndarray, binary: bool, text: str, confidence: float, source: Source, alike: bool) -> bool:
    """Whether a candidate's reading makes it a line of text. A reading :func:`is_text` accepts
    counts at :data:`SURE_CONFIDENCE`, or beside a line already read (``alike``), or when the crop
    is in pieces (:func:`in_pieces`) and reads much the same at other scales (:func:`read_again`).
    A reading of :data:`STABLE_CHARACTERS` letters or digits below the confidence asked counts
    beside a line read, or when it reads the same (:data:`STABLE_AGREEMENT`) at other scales:
    benchmarks/README.md (OCR, 2026-12-03): on seeds 2024 and 2025, readings of five or more
    characters agreeing so at 28 and 60 px came from about 200 crops of text and none of clean
    images, and Tesseract reads text on a busy ground at a confidence near 0."""
    if is_text(text, confidence, source.min_confidence, source.min_characters):
        if confidence >= SURE_CONFIDENCE or alike:
            return True
        return in_pieces(crop, binary) and read_again(crop, binary, text)
    if sum(c.isalnum() for c in text) < max(STABLE_CHARACTERS, source.min_characters):
        return False
    return alike or read_again(crop, binary, text, STABLE_AGREEMENT)


def colour_mask(crop: np.ndarray, ink: int) -> np.ndarray:
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


def smooth(mask: np.ndarray) -> np.ndarray:
    """A binary crop scaled to :data:`READ_HEIGHT` and blurred before thresholding: the jagged,
    broken strokes of one colour on speckle become strokes Tesseract reads."""
    import cv2

    scale = max(1.0, READ_HEIGHT / max(mask.shape[0], 1))
    up = cv2.resize(mask, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    up = cv2.GaussianBlur(up, (0, 0), scale / 2)
    return ((up > 80) * 255).astype(np.uint8)
