"""Finding burned-in text in pixels: candidate text lines from four sources, confirmed by Tesseract.

Tesseract alone reads a whole medical image poorly (speckle and anatomy become hundreds of
low-confidence "words", small text on texture is missed), so detection has four steps, on the
frame windowed to its own display range (8 bits), once across and once turned a quarter:

1. *candidates* (:mod:`lake.deid.ocr_sources`) from four sources: a top-hat of each polarity
   (bright text, dark text) at two contrasts keeps strokes thinner than the structuring element;
   regions of one colour (burned-in text is drawn in one, texture and speckle are not) standing
   out from the median around them; the pixels of a colour drawn in a tile, which the tile's
   histogram shows as a peak over the values beside it (text on speckle, whose thin antialiased
   strokes break into pieces too small for the second source); and the same in tiles one small
   line tall at a lower count (8-16 px text on speckle, read as nearness to its colour, with eight
   letters or digits). A horizontal closing joins the strokes of a line; groups shaped like a
   line of text (height 6-64 px, at least twice as wide as tall, partly filled) are candidates;
2. *confirmation* (:mod:`lake.deid.ocr_read`): each candidate, scaled to about 40 px tall, is
   read by Tesseract as one line (its strokes, its grey values; for the colour sources every pixel
   of the line's colour, specks removed, and for the third also smoothed). It is text when
   Tesseract reads four letters or digits at a mean word confidence of 40 (three at 85; a drawn
   colour is rare enough to need five at 20), sure at 85 or beside a line already read, and below
   that only when its strokes are in pieces (characters, not one blob) and it reads much the same
   at two other scales (Tesseract's letters for a blob or speckle change with the scale); a
   reading of six letters or digits at a lower confidence counts when it reads the same at both
   other scales (text on a busy ground is read at a confidence near 0, but read alike);
3. *completion*: a line read grows along its row by the strokes of its own colour, and once a
   frame has a line, the candidates beside it on its row and the next lines of its block (above
   or below it, over its columns) are lines too, read or not; then each line grows over the
   columns of its row band where something stands out while the rows above and below are quiet
   (:func:`_extend`: a word too faint or too near its ground's colour to be found, between or
   beside words read): recall does not depend on Tesseract reading every word. :func:`pad` pads
   each line by about a character;
4. *decision*: a line shaped like small text (one-pixel strokes of one value filling a tile one
   line tall) that none of the above read is masked unread (:mod:`lake.deid.text_like`; grown by
   half a tile where it is alone): at 8-9 px on speckle Tesseract reads nothing even given the
   exact box.

benchmarks/ocr.py (200 synthetic pairs each, 2026-12-03; benchmarks/README.md): every visible text
pixel masked in 100% of the text images of the tuning corpus (seed 2024) and in 100%, 99.5%
and 100% of three held-out corpora (seeds 2041, 2031, 2051); clean images altered 0.0% (0 of 200), and
1.5%, 0.5%, 0.5% held out (an ultrasound fan's edge, a CT blob). Median OCR time 79-91 ms per
512x512 frame (idle, 2026-12-04). Still missed: text darker than a dark ground (or brighter than a bright one),
clipped to its ground; 8-9 px text on speckle that no tile shows.

The text read stays in memory (:class:`TextBox.text`, hidden from ``repr``): the caller may compare
it with the header's identifiers to rank the risk, and must never store it.

Needs the ``ocr`` extra (``tesserocr``, ``opencv-python-headless``) and Tesseract's English data
(Debian: ``tesseract-ocr``, ``tesseract-ocr-eng``). :func:`available` says whether both are there;
:func:`find_text` raises :class:`OcrUnavailableError` when they are not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lake.deid import ocr_read, ocr_sources
from lake.deid.ocr_read import available, tessdata_dir, unavailable_reason

__all__ = ["TextBox", "available", "display_frame", "find_text", "pad", "tessdata_dir", "unavailable_reason"]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)

LINE_CONTRAST = 10  # grey levels: the same for the rest of a line already read
INK_TOLERANCE = 6  # grey levels: the strokes of a confirmed line's own colour
QUIET_CONTRAST = 12  # grey levels from the median around: a pixel of a character on a quiet ground
COVERED = 0.9  # a candidate this much inside the lines already found is part of them, not read again


@dataclass(frozen=True)
class TextBox:
    """A line of text found in a frame: its box in pixels, Tesseract's confidence, the text read."""

    box: Box
    confidence: float
    text: str = field(default="", repr=False, compare=False)  # in memory only: never store it


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


def _ink_value(grey: np.ndarray, strokes: np.ndarray, box: Box) -> int | None:
    x0, y0, x1, y1 = box
    values = grey[y0:y1, x0:x1][strokes[y0:y1, x0:x1] > 0]
    # the most common value: burned-in text is drawn in one colour, its antialiased edges are not
    return int(np.bincount(values).argmax()) if values.size else None


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
    ocr_read.api()  # raises OcrUnavailableError before any work
    return list(ocr_read.kept(_frames_found, ocr_read.digest(grey), lambda: _find_text(grey), FRAMES_KEPT))


FRAMES_KEPT = 64  # what was found in a frame is kept by its digest (equal frames: a screen saved twice)
_frames_found = ocr_read.store()  # until ocr_read.forget_readings, like the readings


def _find_text(grey: np.ndarray) -> list[TextBox]:
    maps = ocr_sources.Maps.of(grey)
    found = _find_lines(grey, maps)
    cols = grey.shape[1]
    turned = np.ascontiguousarray(np.rot90(grey))
    rows = grey.shape[0]  # the lines found across, as they will be masked (padded), turned:
    padded = (pad(f.box, rows, cols) for f in found)
    across = [TextBox((y0, cols - x1, y1, cols - x0), 0.0) for x0, y0, x1, y1 in padded]
    for line in _find_lines(turned, maps.turned(), across):  # turned: a row is a column
        x0, y0, x1, y1 = line.box
        found.append(TextBox((cols - y1, x0, cols - y0, x1), line.confidence, line.text))
    return found


def _find_lines(grey: np.ndarray, maps: ocr_sources.Maps, seen: list[TextBox] | None = None) -> list[TextBox]:
    """The lines written across ``grey`` (see :func:`find_text`), whose ``maps`` are given;
    ``seen`` are the lines found before in the other direction, padded as they will be masked (a
    candidate mostly inside them is their text seen turned, and is not read)."""
    seen = seen or []
    found: list[TextBox] = []
    unread: list[tuple[Box, int | None]] = []
    apart = maps.apart
    for source in ocr_sources.sources(grey, maps):
        for box in source.candidates():
            line = source.line_of(box)
            ink = _ink_value(grey, source.strokes, box)
            if any(_inside(box, f.box) for f in found):
                continue  # a part of a line already read
            if _covered(line, found) >= COVERED:  # the same line seen by another source: not read again
                found.append(TextBox(_complete(grey, apart, line, ink), 0.0))
                continue
            if seen and _covered(line, found + seen) >= COVERED:  # lines found across, seen turned
                continue
            x0, y0, x1, y1 = box
            if source.read_near and ink is not None:  # a row or two more: the line's antialiased edges
                crops = [(ocr_read.near_ink(grey[max(0, y0 - 2) : y1 + 2, x0:x1], ink), False)]
            elif source.read_grey:
                crops = [(source.strokes[y0:y1, x0:x1], True), (source.image[y0:y1, x0:x1], False)]
            elif ink is not None:  # every pixel of the line's own colour: the strokes a flat source missed too
                colour = ocr_read.colour_mask(grey[y0:y1, x0:x1], ink)
                crops = [(colour, True)]
                if source.min_characters > ocr_sources.MIN_CHARACTERS:  # thin pieces on speckle: smoothed too
                    crops.append((ocr_read.smooth(colour), True))
            else:
                crops = []
            alike = bool(found) and _same_kind(line, found)
            for crop, binary in crops:
                text, confidence = ocr_read.read(crop, binary)
                if ocr_read.confirmed(crop, binary, text, confidence, source, alike):
                    found.append(TextBox(_complete(grey, apart, line, ink), confidence, text))
                    break
            else:
                unread.append((line, ink))
    if found:
        rest = [_complete(grey, apart, line, ink) for line, ink in unread if _same_kind(line, found)]
        found += [TextBox(box, 0.0) for box in rest]
    found += _unreadable_lines(grey, apart, found, seen)
    return [TextBox(_extend(apart, line.box), line.confidence, line.text) for line in found]


def _unreadable_lines(grey: np.ndarray, apart: np.ndarray, found: list[TextBox], seen: list[TextBox]) -> list[TextBox]:
    """Lines shaped like small text that no source read (:mod:`lake.deid.text_like`): masked as a
    decision, read or not (what Tesseract reads of them is kept to rank the risk)."""
    from lake.deid.text_like import grown, text_like_lines

    out = []
    for box in text_like_lines(grey, apart):
        if any(_inside(box, f.box) for f in found):
            continue
        if not any(_overlaps(box, f.box) for f in found):  # found alone: maybe in some of its tiles only
            box = grown(box, *grey.shape)
        if _covered(box, found + seen) >= COVERED:  # masked as part of lines read: not read for their text
            out.append(TextBox(box, 0.0))
            continue
        x0, y0, x1, y1 = box
        text, confidence = ocr_read.read(grey[y0:y1, x0:x1], False)
        out.append(TextBox(box, confidence if ocr_read.is_text(text, confidence) else 0.0, text))
    return out


def _same_kind(box: Box, lines: list[TextBox]) -> bool:
    """Whether a candidate not read as text is the rest of a line that was (as tall, on its row and
    beside it) or the next line of its block (at least half as tall, above or below it by a line's
    height at most, over its columns: the stacked settings of an ultrasound panel, "60%" over
    "Dyn R 58"). Further away, a candidate is as likely speckle, which ultrasound frames showed,
    and is not masked unread."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    for line in lines:
        lx0, ly0, lx1, ly1 = line.box
        lw, lh = lx1 - lx0, ly1 - ly0
        beside = max(x0 - lx1, lx0 - x1) <= 2 * lh  # a word gap or a few letters away
        if beside and 0.6 * lh <= h <= 1.6 * lh and min(y1, ly1) - max(y0, ly0) >= 0.5 * min(h, lh):
            return True
        stacked = max(y0 - ly1, ly0 - y1) <= lh and min(x1, lx1) - max(x0, lx0) >= 0.5 * min(w, lw)
        if stacked and 0.5 * lh <= h <= 1.6 * lh:
            return True
    return False


def _covered(box: Box, lines: list[TextBox]) -> float:
    """The share of ``box`` that ``lines`` cover."""
    x0, y0, x1, y1 = box
    if not lines or x1 <= x0 or y1 <= y0:
        return 0.0
    inside = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for line in lines:
        lx0, ly0, lx1, ly1 = line.box
        inside[max(ly0, y0) - y0 : max(min(ly1, y1) - y0, 0), max(lx0, x0) - x0 : max(min(lx1, x1) - x0, 0)] = True
    return float(inside.mean())


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
