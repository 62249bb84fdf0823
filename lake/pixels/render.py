"""Previews without matplotlib: 8-bit display images, PNG thumbnails and montages."""

from __future__ import annotations

import imagecodecs
import numpy as np

from lake.pixels.volume import apply_window, window_or_default


def to_display(values: np.ndarray, window: tuple[float, float] | None = None, invert: bool = False) -> np.ndarray:
    """One grey frame (modality values) or RGB frame -> uint8 for display.

    Grey frames are windowed (``window`` = (center, width), else the 1st to 99th percentile);
    RGB frames are scaled from their dtype's range. ``invert`` is for MONOCHROME1.
    """
    if values.ndim == 3 and values.shape[-1] == 3:
        if values.dtype == np.uint8:
            return values
        top = float(np.iinfo(values.dtype).max) if values.dtype.kind in "ui" else float(values.max() or 1)
        return np.clip(values.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)
    center, width = window_or_default(values, None, None, window)
    shown = apply_window(values, center, width)
    if invert:
        shown = 1.0 - shown
    return np.round(shown * 255).astype(np.uint8)


def shrink(image: np.ndarray, max_size: int) -> np.ndarray:
    """Downsample by an integer factor (block mean) so the longer side is at most ``max_size``."""
    factor = int(np.ceil(max(image.shape[:2]) / max_size))
    if factor <= 1:
        return image
    rows, cols = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    trimmed = image[:rows, :cols].astype(np.float32)
    blocks = trimmed.reshape(rows // factor, factor, cols // factor, factor, *image.shape[2:])
    return np.round(blocks.mean(axis=(1, 3))).astype(image.dtype)


def png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 grey ``(y, x)`` or RGB ``(y, x, 3)`` image."""
    return bytes(imagecodecs.png_encode(np.ascontiguousarray(image)))


def montage(images: list[np.ndarray] | np.ndarray, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """Tile uint8 display images (all the same shape) into one grid image, row by row."""
    tiles = [np.asarray(i) for i in images]
    if not tiles:
        raise ValueError("montage needs at least one image")
    shape = tiles[0].shape
    if any(t.shape != shape for t in tiles):
        raise ValueError("montage images must share one shape; shrink them first")
    columns = columns or int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / columns))
    height, width = shape[0], shape[1]
    out = np.zeros((rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap, *shape[2:]), np.uint8)
    for n, tile in enumerate(tiles):
        r, c = divmod(n, columns)
        out[r * (height + gap) : r * (height + gap) + height, c * (width + gap) : c * (width + gap) + width] = tile
    return out
