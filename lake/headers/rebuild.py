"""A de-identified instance rebuilt as a pydicom Dataset: the stored header, bulk values and pixels.

:func:`dataset` is what an exporter writes (``ds.save_as(path, enforce_file_format=True)``): the
header is ``header_json`` with its bulk values inlined (:func:`lake.catalog.lookup.header` with
``bulk=True``), values the lake omitted are left out, and the pixel data is the stored frames with
a header that describes them (``instances.stored_*``): RGB after a YBR conversion, colour-by-pixel,
the stored bits allocated, native Explicit VR Little Endian. Nothing here adds de-identification
marks or changes other values: the header is the lake's, byte for byte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from lake.catalog.lookup import check_uid, header
from lake.catalog.query import fetch_rows
from lake.errors import NotInLakeError
from lake.headers.bulk_uri import BULK_OMITTED

if TYPE_CHECKING:
    from lake.catalog.snapshot import Snapshot
    from lake.core import Lake

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_STORED = (
    "pixel_status, frame_count, pixel_dtype, stored_photometric_interpretation, "
    "stored_planar_configuration, stored_bits_allocated"
)


def drop_omitted(model: dict[str, Any]) -> int:
    """Remove elements whose value the lake omitted (``lake:bulkdata-omitted``), at any depth."""
    dropped = 0
    for tag in list(model):
        element = model[tag]
        if not isinstance(element, dict):
            continue
        if element.get("BulkDataURI") == BULK_OMITTED:
            del model[tag]
            dropped += 1
        elif element.get("vr") == "SQ":
            for item in element.get("Value") or []:
                if isinstance(item, dict):
                    dropped += drop_omitted(item)
    return dropped


def _stored(lk: Lake | Snapshot, uid: str) -> dict[str, Any]:
    rows = fetch_rows(lk.connection(), f"SELECT {_STORED} FROM instances WHERE SOPInstanceUID = ? LIMIT 1", [uid])
    if not rows:
        raise NotInLakeError(f"no instance with SOPInstanceUID {uid} in this lake")
    names = [n.strip() for n in _STORED.split(",")]
    return dict(zip(names, rows[0], strict=True))


def header_dataset(lk: Lake | Snapshot, sop_instance_uid: str) -> Dataset:
    """The stored header (bulk values inlined, omitted values left out) as a Dataset, no pixels."""
    model = header(lk, check_uid(sop_instance_uid), bulk=True)
    drop_omitted(model)
    return Dataset.from_json(model)


def set_pixels(ds: Dataset, frames: np.ndarray, stored: dict[str, Any]) -> None:
    """Put the stored ``frames`` (frames, rows, cols[, samples]) into ``ds`` with a header for them."""
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            del ds[keyword]
    samples = int(frames.shape[-1]) if frames.ndim == 4 else 1
    ds.SamplesPerPixel = samples
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    if stored.get("stored_photometric_interpretation"):
        ds.PhotometricInterpretation = str(stored["stored_photometric_interpretation"])
    if samples > 1:
        ds.PlanarConfiguration = 0  # the store holds samples last (colour-by-pixel)
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    if frames.shape[0] > 1 or "NumberOfFrames" in ds:
        ds.NumberOfFrames = int(frames.shape[0])
    data = np.ascontiguousarray(frames).astype(frames.dtype.newbyteorder("<"), copy=False).tobytes()
    if len(data) % 2:
        data += b"\x00"
    if frames.dtype.kind == "f":
        ds.BitsAllocated = frames.dtype.itemsize * 8
        for keyword in ("BitsStored", "HighBit", "PixelRepresentation"):
            if keyword in ds:
                del ds[keyword]
        if frames.dtype.itemsize == 4:
            ds.FloatPixelData = data
        else:
            ds.DoubleFloatPixelData = data
        return
    bits = int(stored.get("stored_bits_allocated") or frames.dtype.itemsize * 8)
    ds.BitsAllocated = bits
    stored_bits = int(ds.get("BitsStored") or bits)
    if stored_bits > bits:
        stored_bits = bits
    ds.BitsStored = stored_bits
    ds.HighBit = stored_bits - 1
    ds.PixelRepresentation = 1 if frames.dtype.kind == "i" else 0
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if bits <= 8 else "OW"


def dataset(lake_or_snapshot: Lake | Snapshot, sop_instance_uid: str) -> Dataset:
    """The instance as a pydicom Dataset with file meta, ready for ``save_as(..., enforce_file_format=True)``.

    The header is the lake's de-identified header with its bulk values (omitted values left out);
    stored pixels, when the instance has them, come with a header that describes them. Raises
    :class:`~lake.errors.NotInLakeError` when the instance is not in the lake (or snapshot).
    """
    lk = lake_or_snapshot
    uid = check_uid(sop_instance_uid)
    ds = header_dataset(lk, uid)
    stored = _stored(lk, uid)
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            del ds[keyword]
    if stored["pixel_status"] == "stored" and stored["frame_count"]:
        set_pixels(ds, np.asarray(lk.pixels(uid)), stored)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds
