"""Decoding a dataset's pixel data to a frames-first numpy array, with PHI-free failure reasons."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


@dataclass(frozen=True)
class DecodedPixels:
    frames: np.ndarray | None  # (frames, rows, cols[, samples]) stored values, as pixel_array gives them
    status: str  # stored | no_pixels | undecodable
    reason: str | None = None


def _reason(exc: BaseException) -> str:
    """A reason code from an exception without quoting the file (messages can carry values)."""
    text = str(exc).lower()
    if "no pixel data" in text:
        return "no_pixel_data"
    if "plugin" in text or "decoder" in text or "available" in text or "not supported" in text:
        return f"unsupported_transfer_syntax:{type(exc).__name__}"
    if "length" in text or "size" in text or "truncat" in text or "buffer" in text:
        return f"pixel_data_length_mismatch:{type(exc).__name__}"
    return f"decode_failed:{type(exc).__name__}"


def decode(ds: Dataset) -> DecodedPixels:
    """All frames as stored values (before any modality LUT), bit-exact with ``ds.pixel_array``."""
    if not any(tag in ds for tag in PIXEL_DATA_TAGS):
        return DecodedPixels(None, "no_pixels")
    try:
        array = ds.pixel_array
    except Exception as exc:  # decoders raise many types; each becomes a recorded reason
        return DecodedPixels(None, "undecodable", _reason(exc))
    try:
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        n_frames = 1
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    base_ndim = 3 if samples > 1 else 2
    if array.ndim == base_ndim:
        array = array[np.newaxis]
    if array.ndim != base_ndim + 1 or (n_frames > 1 and array.shape[0] != n_frames):
        return DecodedPixels(None, "undecodable", "unexpected_pixel_array_shape")
    return DecodedPixels(np.ascontiguousarray(array), "stored")
