"""Candidate lines of burned-in text in one frame, from four sources (see :mod:`lake.deid.ocr`):
a top-hat of each polarity at two contrasts, regions of one colour, and the colour drawn in a tile,
in tiles of a text line's size and one small line tall."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)

MIN_CONFIDENCE = 40.0  # mean Tesseract word confidence (0-100) for a candidate to count as text
MIN_CHARACTERS = 4  # letters or digits read in the candidate (an identifier has more)
TOPHAT_SIZE = 15  # px: strokes thinner than this are kept (text up to ~60 px tall)
CONTRASTS = (48, 96)  # grey levels (of 255) a stroke stands out from its surroundings (low, high)
FLAT_TOLERANCE = 1  # grey levels: neighbours this close are one colour (burned-in text is drawn in one)
FLAT_REACH = 17  # px: pieces of one colour this far apart are joined into a line
FLAT_MIN_AREA = 10  # px: a region of one colour this large may be (part of) a character
FLAT_CONTRAST = 20  # grey levels: a flat region stands out from the median around it
MIN_HEIGHT, MAX_HEIGHT = 6, 64  # px: text lines looked for (8 px text is 6-10 px of ink)
MAX_CANDIDATES = 400  # per frame and polarity: a frame with more is read as a whole (speckle)
INK_TILE = (16, 48)  # px (rows, cols): the tiles whose histograms show a colour drawn in them
INK_LEAST = 30  # px of one colour (+-1) in a tile beyond INK_RATIO times what its neighbours have
INK_RATIO = 4.0
INK_CONFIDENCE = 20.0  # a line of one drawn colour is rare (0.2 per clean ultrasound frame): read
INK_CHARACTERS = 5  # at this confidence with this many letters or digits (edges clipped at white: 4)
LINE_INK_TILE = (12, 96)  # px: the fourth source's tiles, one small line tall (8-16 px text on speckle)
LINE_INK_LEAST = 16  # px of the drawn colour in such a tile (8-11 px text has 6-51 in its whole box)
LINE_INK_ASPECT = 5.0  # its candidates are this many heights wide (a line of about 8 characters)
LINE_INK_CHARACTERS = 8  # read with this many letters or digits (speckle read so: 6 at most in 40 frames)
LINE_INK_CONFIDENCE = 30.0  # at this confidence: the count of characters is what tells text from speckle


@dataclass
class Source:
    """One way of seeing a frame's text: the image with text bright, its strokes (the binary mask of
    what may be ink) and their groups (strokes joined along a line; line-shaped or not)."""

    image: np.ndarray
    strokes: np.ndarray
    groups: list[Box]
    read_grey: bool = True  # also read the grey crop (the strokes of a flat source are already clean)
    min_confidence: float = MIN_CONFIDENCE
    min_characters: int = MIN_CHARACTERS
    min_aspect: float = 2.0  # a candidate is this many times as wide as tall (2: three characters)
    read_near: bool = False  # read the crop as nearness to the line's ink (:func:`near_ink`)

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


def groups(binary: np.ndarray, reach: int = 9) -> list[Box]:
    """Boxes of the strokes joined along a line (gaps up to ``reach`` px wide)."""
    import cv2

    join = cv2.getStructuringElement(cv2.MORPH_RECT, (reach, 3))
    lines = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, join)
    # each 8-connected group's outer border (a tenth of the time of labelling every pixel), in the
    # order of its first pixel, top to bottom and left to right
    contours, hierarchy = cv2.findContours(lines, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    outer = sorted(
        (c for c, (_next, _previous, _child, parent) in zip(contours, hierarchy[0], strict=True) if parent < 0),
        key=lambda c: (int(c[0, 0, 1]), int(c[0, 0, 0])),
    )
    return [(x, y, x + w, y + h) for x, y, w, h in map(cv2.boundingRect, outer)]


def tophat_strokes(grey: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Bright text, then dark text, at each contrast of :data:`CONTRASTS`: the image with that
    text bright, and the strokes a top-hat keeps (thin, standing out from their surroundings by
    that much), specks removed. A square top-hat does not depend on the direction of the lines."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (TOPHAT_SIZE, TOPHAT_SIZE))
    out = []
    for image in (grey, 255 - grey):
        strokes = cv2.morphologyEx(image, cv2.MORPH_TOPHAT, kernel)
        for contrast in CONTRASTS:
            _, binary = cv2.threshold(strokes, contrast, 255, cv2.THRESH_BINARY)
            # specks of 1-3 px (noise, speckle) are no part of a character, even of 8 px text
            _count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
            small = stats[:, cv2.CC_STAT_AREA] < 4  # per label (the ground, label 0, is 0 already)
            if small.any():
                binary[small[labels]] = 0
            out.append((image, binary))
    return out


def tophat_sources(grey: np.ndarray, strokes: list[tuple[np.ndarray, np.ndarray]] | None = None) -> Iterator[Source]:
    """The top-hat sources (:func:`tophat_strokes`, or ``strokes`` computed before)."""
    for image, binary in tophat_strokes(grey) if strokes is None else strokes:
        yield Source(image, binary, groups(binary))


def flat_labels(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def stand_out(grey: np.ndarray) -> np.ndarray:
    """How far each pixel stands out from the median around it (grey levels, uint8)."""
    import cv2

    ground = cv2.medianBlur(grey, 2 * (TOPHAT_SIZE // 2) + 1)
    return cv2.absdiff(grey, ground)


def flat_source(grey: np.ndarray, apart: np.ndarray, regions: tuple[np.ndarray, np.ndarray] | None = None) -> Source:
    """Strokes of one grey value: burned-in text is drawn in one colour, which texture and speckle
    (whose neighbours differ) are not; regions too small, too large or too filled are dropped."""

    labels, shape = flat_labels(grey) if regions is None else regions
    area, h, w = shape.T
    keep = (area >= FLAT_MIN_AREA) & (h <= MAX_HEIGHT) & (w <= 4 * MAX_HEIGHT) & (area <= 0.8 * h * w + 1)
    # and standing out from the ground around it (flat noise clipped at black is no text)
    binary = (keep[labels] & (apart >= FLAT_CONTRAST)).astype(np.uint8) * 255
    # the strokes of one colour on speckle are found in pieces: joined from further apart
    return Source(grey, binary, groups(binary, FLAT_REACH), read_grey=False)


def ink_source(
    grey: np.ndarray, apart: np.ndarray, tile_shape: tuple[int, int] = INK_TILE, least: int = INK_LEAST
) -> Source:
    """Pixels of a colour drawn in a tile: text on speckle or texture is found by its colour, which
    one tile's histogram shows as a peak (:data:`INK_LEAST` pixels of one value +-1 standing out
    from their ground, :data:`INK_RATIO` times the values beside it) where the ground has every
    value a few times. Its thin, antialiased strokes break into pieces too small for the flat source."""
    values = np.arange(256)
    rows, cols = grey.shape
    th, tw = tile_shape
    where = np.flatnonzero(apart >= FLAT_CONTRAST)  # only pixels standing out are counted or kept
    g = grey.ravel()[where].astype(np.intp)
    ys, xs = np.divmod(where, cols)
    kept = np.zeros(where.size, dtype=bool)
    for oy, ox in ((0, 0), (0, tw // 2), (th // 2, 0), (th // 2, tw // 2)):  # four grids offset by half a tile
        across = (cols + ox) // tw + 1
        tile = ((ys + oy) // th) * across + (xs + ox) // tw
        count = ((rows - 1 + oy) // th) * across + (cols - 1 + ox) // tw + 1
        # a tile with fewer pixels standing out than ``least`` has no colour drawn: only the others
        active = np.flatnonzero(np.bincount(tile, minlength=count) >= least)
        if not active.size:
            continue
        compact = np.full(count, -1, dtype=np.intp)
        compact[active] = np.arange(active.size)
        at = compact[tile]
        mine = np.flatnonzero(at >= 0)
        at, value = at[mine], g[mine]
        n = active.size
        hist = np.bincount(at * 256 + value, minlength=n * 256).reshape(n, 256)
        # per tile and value v, the pixels of values below v + k (k in -9..10, clipped to 0..256)
        below_all = np.cumsum(hist, axis=1)
        total = np.concatenate([np.zeros((n, 10), np.int64), below_all, np.repeat(below_all[:, -1:], 10, 1)], 1)

        def window(a: int, b: int, total: np.ndarray = total) -> tuple[np.ndarray, np.ndarray]:
            lo, hi = np.clip(values + a, 0, 256), np.clip(values + b, 0, 256)
            return total[:, 9 + b : 265 + b] - total[:, 9 + a : 265 + a], hi - lo

        peak, _ = window(-1, 2)
        below, n_below = window(-9, -2)
        above, n_above = window(3, 10)
        beside = (below + above) * 3.0 / np.maximum(n_below + n_above, 1)
        score = peak - INK_RATIO * beside
        colour = score.argmax(axis=1)
        drawn = score[np.arange(n), colour] >= least
        kept[mine] |= drawn[at] & (np.abs(value - colour[at]) <= FLAT_TOLERANCE)
    strokes = np.zeros(grey.shape, dtype=np.uint8)
    strokes.ravel()[where[kept]] = 255
    lines = groups(strokes, FLAT_REACH)
    return Source(grey, strokes, lines, read_grey=False, min_confidence=INK_CONFIDENCE, min_characters=INK_CHARACTERS)


def line_ink_source(grey: np.ndarray, apart: np.ndarray) -> Source:
    """The colour drawn in tiles one small line tall (:data:`LINE_INK_TILE`), at a lower count
    (:data:`LINE_INK_LEAST`): 8-16 px text on speckle, most of whose pixels are antialiased edge,
    so only a few dozen are the drawn colour. Speckle makes such peaks too (about 7 candidates in a
    clean ultrasound frame), so only long lines are read (:data:`LINE_INK_ASPECT`), as nearness to
    their colour (:func:`near_ink`), and count with :data:`LINE_INK_CHARACTERS` letters or digits."""
    source = ink_source(grey, apart, LINE_INK_TILE, LINE_INK_LEAST)
    source.min_confidence, source.min_characters = LINE_INK_CONFIDENCE, LINE_INK_CHARACTERS
    source.min_aspect, source.read_near = LINE_INK_ASPECT, True
    return source


@dataclass(frozen=True)
class Maps:
    """What the sources see of a frame that does not depend on the direction of its lines, computed
    once and turned a quarter for the second pass (:func:`lake.deid.ocr.find_text`): how far each
    pixel stands out (:func:`stand_out`), the top-hat strokes (:func:`tophat_strokes`) and the
    regions of one value (:func:`flat_labels`). A median, a top-hat and regions over a square
    neighbourhood are the same turned; only a region's height and width change places."""

    apart: np.ndarray
    strokes: list[tuple[np.ndarray, np.ndarray]]
    regions: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, grey: np.ndarray) -> Maps:
        return cls(stand_out(grey), tophat_strokes(grey), flat_labels(grey))

    def turned(self) -> Maps:
        """The maps of the frame turned a quarter (``np.rot90``)."""

        def turn(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(np.rot90(a))

        labels, shape = self.regions
        return Maps(
            turn(self.apart),
            [(turn(image), turn(binary)) for image, binary in self.strokes],
            (turn(labels), shape[:, [0, 2, 1]]),
        )


def sources(grey: np.ndarray, maps: Maps) -> Iterator[Source]:
    yield from tophat_sources(grey, maps.strokes)
    yield flat_source(grey, maps.apart, maps.regions)
    yield ink_source(grey, maps.apart)
    yield line_ink_source(grey, maps.apart)
