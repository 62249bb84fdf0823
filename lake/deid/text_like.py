"""Lines that look like small text but that Tesseract cannot read: masked unread, as a decision.

At 8-9 px on ultrasound speckle Tesseract reads nothing even given the text's exact box
(benchmarks/README.md, OCR), so recall there cannot come from reading. What still tells such a
line from speckle is the shape of its strokes: a stroke of small text is one pixel wide, so the
line is full of *thin* pixels (a ridge one pixel wide across or down: brighter or darker than both
neighbours on a side by :data:`RIDGE_CONTRAST`), while the grain of speckle, of anatomy and of
noise smoothed by the scanner is wider. A tile one small line tall (:data:`TILE`, 8 x 48 px) in
which the thin pixels of one value (+-1) standing out from their ground number :data:`LEAST` or
more, and :data:`RATIO` times as many as the tiles above and below it and the mean of its
neighbourhood (5 x 3 tiles), is a line of text; such tiles, joined where they touch, are masked
without being read (:func:`text_like_lines`).

benchmarks/ocr.py (seed 2024, 2026-12-02): it finds the three images the readers missed (8-9 px
on speckle: corpus 155, 315, 345; recall 98.5% -> 100%) and fires on none of the 200 clean frames,
across or turned a quarter, nor on the 200 of the held-out seed 2031 (whose three misses, 9-16 px on
speckle, it does not find); at :data:`LEAST` 6 it fired on 11 clean ultrasound frames (the fan's
lower arc), at 10 it found one of the three: the margin is small. The corpus's speckle is drawn in
2 x 2 px grains, which have no one-pixel ridge at all; on the real speckle of deid-data's
ultrasound cine loop it fires on about 1-2 tiles a frame besides the overlays (benchmarks/README.md).
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)

TILE = (8, 48)  # px (rows, cols): one line of 8-12 px text, about 8 characters
LEAST = 8  # thin pixels of one value (+-1) in a tile
RATIO = 4.0  # times those of the tiles above and below and of its neighbourhood's mean
RIDGE_CONTRAST = 8  # grey levels: a thin pixel differs from both neighbours on a side by this much
ROWS, COLUMNS = 4, 6  # distinct rows and columns those thin pixels stand in
STAND_OUT = 20  # grey levels from the median around it (as the ink sources: lake.deid.ocr_sources.FLAT_CONTRAST)


def thin_pixels(grey: np.ndarray) -> np.ndarray:
    """Pixels on a ridge one pixel wide, across or down (bright or dark): the strokes of small text."""
    g = grey.astype(np.int16)
    p = np.pad(g, 1, mode="edge")
    out = np.zeros(g.shape, dtype=bool)
    for a, b in ((p[1:-1, :-2], p[1:-1, 2:]), (p[:-2, 1:-1], p[2:, 1:-1])):
        out |= (g - np.maximum(a, b) >= RIDGE_CONTRAST) | (np.minimum(a, b) - g >= RIDGE_CONTRAST)
    return out


def _flagged(grey: np.ndarray, thin: np.ndarray) -> list[Box]:
    """The tiles (of four grids offset by half a tile) where a value's thin pixels stand out."""
    th, tw = TILE
    rows, cols = grey.shape
    ys, xs = np.nonzero(thin)
    value = grey[ys, xs].astype(np.int64)
    out: list[Box] = []
    for oy in (0, th // 2):
        for ox in (0, tw // 2):
            down, across = (rows - 1 + oy) // th + 1, (cols - 1 + ox) // tw + 1
            tile = ((ys + oy) // th) * across + (xs + ox) // tw
            # tile (ty, tx) and value v at (ty + 2, tx + 1, v + 1) of a padded grid: around it, none
            wide, depth = across + 2, 258
            keys = ((ys + oy) // th + 2) * (wide * depth) + ((xs + ox) // tw + 1) * depth + value + 1
            padded = np.bincount(keys, minlength=(down + 4) * wide * depth).reshape(down + 4, wide, depth)

            def peak(ty: np.ndarray, tx: np.ndarray, v: np.ndarray, padded: np.ndarray = padded) -> np.ndarray:
                """Thin pixels of each value +-1 in tile (ty, tx), taken as padded."""
                return padded[ty, tx, v] + padded[ty, tx, v + 1] + padded[ty, tx, v + 2]

            # the only tiles and values with any: those of a thin pixel, and one value either side
            spots = np.unique(keys)
            spots = np.unique(np.concatenate([spots - 1, spots, spots + 1]))
            tys, rest = np.divmod(spots, wide * depth)
            txs, vs = np.divmod(rest, depth)
            real = (vs >= 1) & (vs <= 256)  # values 0-255 (a thin pixel of 0 has none below it)
            tys, txs, vs = tys[real] - 2, txs[real] - 1, vs[real] - 1
            count = peak(tys + 2, txs + 1, vs)
            enough = count >= LEAST
            tys, txs, vs, count = tys[enough], txs[enough], vs[enough], count[enough]
            above, below = peak(tys + 1, txs + 1, vs), peak(tys + 3, txs + 1, vs)
            hood = sum(peak(tys + 2 + dy, txs + 1 + dx, vs) for dy in range(-2, 3) for dx in range(-1, 2))
            mean = (hood - count) / 14.0  # the 14 other tiles of the neighbourhood (3 across, 5 down)
            ok = count >= RATIO * np.maximum(np.maximum(above, below), mean)
            order = np.argsort(tile, kind="stable")  # the thin pixels tile by tile
            starts = np.searchsorted(tile[order], tys * across + txs)
            ends = np.searchsorted(tile[order], tys * across + txs, side="right")
            for ty, tx, v, start, end in zip(tys[ok], txs[ok], vs[ok], starts[ok], ends[ok], strict=True):
                y0, x0 = int(ty) * th - oy, int(tx) * tw - ox
                box = (max(0, x0), max(0, y0), min(cols, x0 + tw), min(rows, y0 + th))
                if box in out:
                    continue
                here = order[start:end]
                mine = here[np.abs(value[here] - v) <= 1]
                if _spread(ys[mine], xs[mine]):
                    out.append(box)
    return out


def _spread(rows: np.ndarray, columns: np.ndarray) -> bool:
    """Whether a tile's thin pixels of one value stand in :data:`ROWS` rows and :data:`COLUMNS`
    columns or more: a line of characters (the edge of a fan or a field drawn across stands in
    one or two rows, one drawn down in one or two columns)."""
    if rows.size < max(ROWS, COLUMNS):
        return False
    distinct_rows = np.count_nonzero(np.bincount(rows - rows.min()))
    return bool(distinct_rows >= ROWS and np.count_nonzero(np.bincount(columns - columns.min())) >= COLUMNS)


def _join(boxes: list[Box]) -> list[Box]:
    """Boxes that overlap or touch, joined (a line found in several tiles of the offset grids)."""
    joined: list[Box] = []
    for box in sorted(boxes):
        x0, y0, x1, y1 = box
        merged = True
        while merged:
            merged = False
            for other in joined:
                ox0, oy0, ox1, oy1 = other
                if ox0 <= x1 and x0 <= ox1 and oy0 <= y1 and y0 <= oy1:
                    joined.remove(other)
                    x0, y0, x1, y1 = min(x0, ox0), min(y0, oy0), max(x1, ox1), max(y1, oy1)
                    merged = True
                    break
        joined.append((x0, y0, x1, y1))
    return joined


def text_like_lines(grey: np.ndarray, apart: np.ndarray) -> list[Box]:
    """Boxes of lines that look like small text (see the module doc) in one uint8 grey frame;
    ``apart`` is how far each pixel stands out from the median around it."""
    thin = thin_pixels(grey) & (apart >= STAND_OUT)
    if not thin.any():
        return []
    return _join(_flagged(grey, thin))


def grown(box: Box, rows: int, cols: int) -> Box:
    """``box`` grown by half a tile (:data:`TILE`) on every side, clipped to the frame: a line found
    alone may be found in only some of its tiles (the thin pixels of its first or last characters
    too few for a tile of their own), so its neighbours' halves are masked with it."""
    th, tw = TILE
    x0, y0, x1, y1 = box
    return max(0, x0 - tw // 2), max(0, y0 - th // 2), min(cols, x1 + tw // 2), min(rows, y1 + th // 2)
