"""Finding burned-in text in pixels: candidate text lines by morphology, confirmed by Tesseract OCR.

Tesseract alone reads a whole medical image poorly (speckle and anatomy become hundreds of
low-confidence "words", small text on texture is missed), so detection has two steps:

1. *candidates*: on the frame windowed to its own display range (8 bits), a top-hat of each
   polarity (bright text, dark text) keeps strokes thinner than the structuring element; a
   horizontal closing joins the characters of a line; connected components shaped like a line of
   text (height 6-64 px, at least twice as wide as tall, partly filled) are the candidates;
2. *confirmation*: each candidate, binarised and scaled to about 40 px tall, is read by Tesseract
   as one line (its strokes, then its grey values); it is text when Tesseract reads at least four
   letters or digits with a mean word
   confidence of at least :data:`MIN_CONFIDENCE`.

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
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from lake.errors import OcrUnavailableError

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)

MIN_CONFIDENCE = 60.0  # mean Tesseract word confidence (0-100) for a candidate to count as text
MIN_CHARACTERS = 4  # letters or digits read in the candidate (an identifier has more)
TOPHAT_SIZE = 15  # px: strokes thinner than this are kept (text up to ~60 px tall)
MIN_CONTRAST = 48  # grey levels (of 255) a stroke must stand out from its surroundings
MIN_HEIGHT, MAX_HEIGHT = 6, 64  # px: text lines looked for (8 px text is 6-10 px of ink)
READ_HEIGHT = 40  # px: candidates are scaled to about this height before Tesseract reads them
MAX_CANDIDATES = 400  # per frame and polarity: a frame with more is read as a whole (speckle)

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
class _Polarity:
    """One polarity of a frame: the image with its text bright, its strokes and their groups."""

    image: np.ndarray
    strokes: np.ndarray
    groups: list[Box]  # every group of joined strokes (line-shaped or not)

    def candidates(self) -> list[Box]:
        out = []
        for x0, y0, x1, y1 in self.groups:
            w, h = x1 - x0, y1 - y0
            if not MIN_HEIGHT <= h <= MAX_HEIGHT or w < 2 * h:  # a line of 3 or more characters
                continue
            ink = int(np.count_nonzero(self.strokes[y0:y1, x0:x1]))
            if 0.08 * w * h <= ink <= 0.9 * w * h:
                out.append((x0, y0, x1, y1))
        return out[:MAX_CANDIDATES]

    def line_of(self, box: Box) -> Box:
        """``box`` grown by the groups beside it on the same line (words and characters too short
        to be read alone: "ID", a lone initial), gaps up to twice the line's height."""
        x0, y0, x1, y1 = box
        grown = True
        while grown:
            grown = False
            h = y1 - y0
            for gx0, gy0, gx1, gy1 in self.groups:
                overlap = min(y1, gy1) - max(y0, gy0)
                if overlap < 0.5 * min(h, gy1 - gy0) or gy1 - gy0 > 1.5 * h:
                    continue
                gap = max(gx0 - x1, x0 - gx1)
                if gap <= 2 * h and not (gx0 >= x0 and gx1 <= x1 and gy0 >= y0 and gy1 <= y1):
                    x0, y0, x1, y1 = min(x0, gx0), min(y0, gy0), max(x1, gx1), max(y1, gy1)
                    grown = True
        return x0, y0, x1, y1


def _polarities(grey: np.ndarray) -> Iterator[_Polarity]:
    """Bright text, then dark text: a top-hat keeps thin high-contrast strokes, a closing joins them."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (TOPHAT_SIZE, TOPHAT_SIZE))
    join = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 3))
    for image in (grey, 255 - grey):
        strokes = cv2.morphologyEx(image, cv2.MORPH_TOPHAT, kernel)
        _, binary = cv2.threshold(strokes, MIN_CONTRAST, 255, cv2.THRESH_BINARY)
        # specks of 1-3 px (noise, speckle) are no part of a character, even of 8 px text
        _count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < 4)
        if small.size:
            binary[np.isin(labels, small)] = 0
        lines = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, join)
        _count, _labels, stats, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
        groups = [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h, _area in stats[1:]]
        yield _Polarity(image, binary, groups)


def _read(crop: np.ndarray, binary: bool) -> tuple[str, float]:
    """Tesseract's reading of one crop (text bright) as one line: (text, mean word confidence)."""
    import cv2
    from PIL import Image

    scale = max(1.0, READ_HEIGHT / max(crop.shape[0], 1))
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


def _is_text(text: str, confidence: float) -> bool:
    return sum(c.isalnum() for c in text) >= MIN_CHARACTERS and confidence >= MIN_CONFIDENCE


def find_text(grey: np.ndarray) -> list[TextBox]:
    """Lines of text in one uint8 grey frame (see :func:`display_frame`); raises OcrUnavailableError."""
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError(f"find_text needs one uint8 grey frame, got {grey.dtype} {grey.shape}: use display_frame")
    _api()  # raises OcrUnavailableError before any work
    found: list[TextBox] = []
    for polarity in _polarities(grey):
        for box in polarity.candidates():
            if any(_inside(box, f.box) for f in found):
                continue  # a part of a line already read
            x0, y0, x1, y1 = box
            for image, binary in ((polarity.strokes, True), (polarity.image, False)):
                text, confidence = _read(image[y0:y1, x0:x1], binary)
                if _is_text(text, confidence):
                    found.append(TextBox(polarity.line_of(box), confidence, text))
                    break
    return found


def _inside(box: Box, other: Box) -> bool:
    x0, y0, x1, y1 = box
    ox0, oy0, ox1, oy1 = other
    return x0 >= ox0 and y0 >= oy0 and x1 <= ox1 and y1 <= oy1


def pad(box: Box, rows: int, cols: int) -> Box:
    """``box`` grown by a third of its height (at least 2 px) on each side, clipped to the frame."""
    x0, y0, x1, y1 = box
    p = max(2, (y1 - y0) // 3)
    return max(0, x0 - p), max(0, y0 - p), min(cols, x1 + p), min(rows, y1 + p)
