"""Synthetic images with made-up identifiers rendered into the pixels, for the OCR tests and benchmark.

Each :class:`TextImage` is one 8-bit frame of a kind (CT, MR, US, SC, photograph) with, or without,
one line of text (a name, an ID, a date) at a random position, size, font and contrast; ``ink``
marks the text's pixels (antialiased edges at half strength or more), so a test can check that
every one of them was masked. Needs Pillow and a TrueType font (Debian ``fonts-dejavu-core``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KINDS = ("CT", "MR", "US", "SC", "XC")  # XC: external-camera photography
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_NAMES = ("DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansCondensed-Oblique.ttf")
VISIBLE = 16  # grey levels: an ink pixel this far from the ground under it can be seen (and must be masked)
NAMES = ("DOE^JANE", "QUIXOTE ALONSO", "Smith, John", "MUSTERMANN^ERIKA", "ZORRO DIEGO", "Patient: BLOGGS FRED")


def fonts() -> list[Path]:
    return [FONT_DIR / n for n in FONT_NAMES if (FONT_DIR / n).is_file()]


@dataclass
class TextImage:
    kind: str
    pixels: np.ndarray  # uint8 (rows, cols)
    ink: np.ndarray | None = None  # bool mask of the text's pixels; None: no text
    text: str = field(default="", repr=False)
    size: int = 0  # font size in px


def _text(rng: np.random.Generator) -> str:
    k = int(rng.integers(4))
    name = NAMES[int(rng.integers(len(NAMES)))]
    if k == 0:
        return name
    if k == 1:
        return f"ID {rng.integers(10**6, 10**9)}"
    if k == 2:
        return f"{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/{rng.integers(1950, 2024)}"
    return f"{name} {rng.integers(10**5, 10**8)}"


def background(rng: np.random.Generator, kind: str, n: int = 512) -> np.ndarray:
    """An 8-bit frame that looks enough like its kind to give OCR a fair chance of false positives."""
    y, x = np.mgrid[:n, :n]
    img = rng.normal(0, 6, (n, n))
    if kind in ("CT", "MR"):
        img += (((x - n / 2) ** 2 / (0.4 * n) ** 2 + (y - n / 2) ** 2 / (0.33 * n) ** 2) < 1) * 400
        for _ in range(8):
            cx, cy = rng.uniform(0.3 * n, 0.7 * n, 2)
            img += ((x - cx) ** 2 + (y - cy) ** 2 < rng.uniform(5, 30) ** 2) * rng.uniform(-200, 300)
    elif kind == "US":
        fan = ((x - n / 2) ** 2 + y**2 < (0.9 * n) ** 2) & (np.abs(x - n / 2) < y * 0.8 + 5)
        speckle = rng.gamma(2.0, 40, (n // 2, n // 2)).repeat(2, 0).repeat(2, 1)
        img = np.where(fan, speckle, 0)
    elif kind == "SC":
        img = np.zeros((n, n)) + 30
        img[n // 4 : 3 * n // 4, n // 4 : 3 * n // 4] = 120 + 40 * np.sin(x[: n // 2, : n // 2] / 9.0)
    else:
        img = 120 + 60 * np.sin(x / 37.0) * np.cos(y / 53.0) + rng.normal(0, 3, (n, n))
    lo, hi = np.percentile(img, [0.5, 99.5])
    return np.clip((img - lo) / (hi - lo + 1e-9) * 255, 0, 255).astype(np.uint8)


def render(
    rng: np.random.Generator,
    image: np.ndarray,
    text: str,
    size: int,
    contrast: tuple[int, int] = (80, 200),
    dark: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``image`` with ``text`` drawn at a random place and font, ``contrast`` grey levels from the
    ground under it (darker where ``dark``; None: away from the ground, brighter on a dark one),
    and the text's ink mask (the pixels antialiased at half strength or more that can be seen)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(fonts()[int(rng.integers(len(fonts())))]), size)
    im = Image.fromarray(image)
    left, top, right, bottom = ImageDraw.Draw(im).textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    x = int(rng.integers(0, max(1, image.shape[1] - w)))
    y = int(rng.integers(0, max(1, image.shape[0] - h)))
    ground = float(np.median(image[y : y + h, x : x + w]))
    step = int(rng.integers(*contrast))
    darker = ground >= 128 if dark is None else dark
    fill = int(max(0, ground - step)) if darker else int(min(255, ground + step))
    ImageDraw.Draw(im).text((x - left, y - top), text, font=font, fill=fill)
    mask = Image.new("L", im.size, 0)
    ImageDraw.Draw(mask).text((x - left, y - top), text, font=font, fill=255)
    drawn = np.asarray(im).copy()
    # ink: the text's pixels that can be seen (a letter drawn in the colour of its ground is not)
    visible = np.abs(drawn.astype(np.int16) - image) >= VISIBLE
    return drawn, (np.asarray(mask) >= 128) & visible


def corpus(seed: int, count: int, min_size: int = 8, max_size: int = 30) -> list[TextImage]:
    """``count`` pairs of images (the kinds in turn): one without text, the same with a line of text."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        clean = background(rng, kind)
        size = int(rng.integers(min_size, max_size + 1))
        text = _text(rng)
        pixels, ink = render(rng, clean, text, size)
        out += [TextImage(kind, clean), TextImage(kind, pixels, ink, text, size)]
    return out


HARD_CASES = ("speckle", "low_contrast", "inverse", "rotated", "small")


def hard_corpus(seed: int, count: int) -> list[TextImage]:
    """``count`` text images of the hard cases in turn (``kind`` is "case:KIND"): text on
    ultrasound speckle, at a low contrast (40-80 grey levels), dark on a dark ground or bright on
    a bright one (inverse), rotated 90 degrees, and small (8-9 px). Images whose text cannot be
    seen (fewer than 20 ink pixels) are drawn again."""
    rng = np.random.default_rng(seed)
    out: list[TextImage] = []
    while len(out) < count:
        case = HARD_CASES[len(out) % len(HARD_CASES)]
        kind = "US" if case == "speckle" else KINDS[int(rng.integers(len(KINDS)))]
        clean = background(rng, kind)
        size = int(rng.integers(8, 10)) if case == "small" else int(rng.integers(10, 25))
        text = _text(rng)
        contrast = (40, 80) if case == "low_contrast" else (80, 200)
        if case == "rotated":
            pixels, ink = render(rng, np.ascontiguousarray(np.rot90(clean)), text, size)
            pixels, ink = np.ascontiguousarray(np.rot90(pixels, -1)), np.ascontiguousarray(np.rot90(ink, -1))
        elif case == "inverse":
            ground = float(np.median(clean))
            pixels, ink = render(rng, clean, text, size, (40, 120), dark=ground < 128)
        else:
            pixels, ink = render(rng, clean, text, size, contrast)
        if int(ink.sum()) >= 20:
            out.append(TextImage(f"{case}:{kind}", pixels, ink, text, size))
    return out
