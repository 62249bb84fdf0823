"""Decoding a dataset's pixel data to a frames-first numpy array, with PHI-free failure reasons."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_color_lut, convert_color_space

from lake import diagnostics
from lake.errors import PixelDataError

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
        # pydicom logs each failing decoder plugin's traceback (and warns on fallbacks) quoting the
        # file's data: captured for the enclosing ingest (lake.diagnostics), never printed.
        with diagnostics.capture():
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


# pydicom's pixel_array converts these to RGB while decoding (as_rgb=True); stored values are RGB.
_DECODED_AS_RGB = frozenset({"YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "RGB"})


def decoded_photometric(ds: Dataset) -> str:
    """Photometric interpretation of the values :func:`decode` returns (not always the header's)."""
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    return "RGB" if samples == 3 and photometric in _DECODED_AS_RGB else photometric


def stored_value_attributes(ds: Dataset) -> dict[str, object]:
    """Array attributes needed to interpret stored values beyond the promoted columns.

    ``palette`` is the palette colour table as the RGB of every stored value from ``first``
    (lists of ``entries`` integers each), so colour can be restored without the DICOM header.
    """
    out: dict[str, object] = {"StoredPhotometricInterpretation": decoded_photometric(ds)}
    out["signed"] = bool(int(ds.get("PixelRepresentation", 0) or 0))
    if out["StoredPhotometricInterpretation"] == "PALETTE COLOR":
        try:
            descriptor = ds.RedPaletteColorLookupTableDescriptor
            entries = int(descriptor[0]) or 65536
            first = int(descriptor[1])
            table = apply_color_lut(np.arange(first, first + entries, dtype=np.uint16), ds)
            out["palette"] = {"first": first, "bits": int(descriptor[2]), "rgb": np.asarray(table).T.tolist()}
        except Exception:  # an unusable palette leaves only stored values; to_rgb then raises
            pass
    return out


def to_rgb(frames: np.ndarray, attributes: dict[str, object]) -> np.ndarray:
    """Stored values -> RGB ``(..., 3)`` using the array attributes; raises ``PixelDataError``."""
    photometric = str(attributes.get("StoredPhotometricInterpretation") or attributes.get("PhotometricInterpretation"))
    if photometric == "RGB":
        return frames
    if photometric == "PALETTE COLOR":
        palette = attributes.get("palette")
        if not isinstance(palette, dict):
            raise PixelDataError("this array's palette colour table was not stored; only stored values are available")
        table = np.asarray(palette["rgb"]).T
        table = table.astype(np.uint8 if int(palette["bits"]) <= 8 else np.uint16)
        index = np.clip(frames.astype(np.int64) - int(palette["first"]), 0, table.shape[0] - 1)
        return table[index]
    if photometric.startswith("YBR") and frames.shape[-1] == 3:
        return np.asarray(convert_color_space(frames, "YBR_FULL", "RGB"))
    raise PixelDataError(f"photometric interpretation {photometric} is not colour; read stored values instead")
