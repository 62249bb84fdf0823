"""DICOM Part 10 datasets rebuilt from a lake snapshot: the stored de-identified header plus the pixels.

This is the export's one rebuild function (:func:`rebuild`), on top of
:func:`lake.headers.rebuild.dataset` (the stored header with its bulk values, and the stored pixels
with a header describing them):

- the header is ``header_json`` (DICOM JSON) with the ``bulk`` table's values inlined: every
  de-identified element the lake keeps, the de-identification marks (PatientIdentityRemoved,
  DeidentificationMethod and its code sequence) included; values over the bulk caps are left out;
- pixels are the stored values, written uncompressed (Explicit VR Little Endian), so a viewer needs
  no codec and a re-ingest gives bit-identical pixels. Colour is stored as RGB (YBR is converted at
  ingest), so a colour image is written as RGB, interleaved; a palette colour image whose lookup
  tables the header no longer holds is written as its RGB values;
- the file meta is made anew: MediaStorageSOPClassUID/InstanceUID from the header, this package's
  implementation UID, no source application entity title.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake.errors import ExportError

if TYPE_CHECKING:
    import numpy as np
    from pydicom import Dataset

    from lake.catalog.snapshot import Snapshot

#: Implementation version name written in the file meta of exported files (at most 16 characters).
IMPLEMENTATION_VERSION = "LAKE_EXPORT_1"
_PALETTE_TAGS = (
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData",
    "PaletteColorLookupTableUID",
)


def rebuild(snapshot: Snapshot, sop_instance_uid: str) -> Dataset:
    """The de-identified instance ``sop_instance_uid`` of ``snapshot`` as a Part 10 dataset (with
    file meta, uncompressed). Raises :class:`~lake.errors.NotInLakeError` when it is not in the
    snapshot or has no stored pixels, :class:`ExportError` when its header cannot be read back."""
    from lake.headers.rebuild import dataset

    try:
        ds = dataset(snapshot, sop_instance_uid)
    except (ValueError, TypeError, KeyError) as exc:
        raise ExportError(
            f"the stored header of instance {sop_instance_uid} cannot be read as DICOM JSON ({type(exc).__name__})"
        ) from None
    if "PixelData" not in ds:
        from lake.errors import NotInLakeError

        raise NotInLakeError(f"instance {sop_instance_uid} has no stored pixels")
    has_lut = "RedPaletteColorLookupTableData" in ds or "SegmentedRedPaletteColorLookupTableData" in ds
    if str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR" and not has_lut:
        # the lookup tables were over the bulk caps: the image is written as its RGB values
        _set_pixels(ds, snapshot.pixels(sop_instance_uid, rgb=True), snapshot, sop_instance_uid)
    _set_file_meta(ds)
    return ds


def _set_pixels(ds: Dataset, values: np.ndarray, snapshot: Snapshot, uid: str) -> None:
    import numpy as np

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    samples = int(ds.get("SamplesPerPixel", 1))
    has_lut = "RedPaletteColorLookupTableData" in ds or "SegmentedRedPaletteColorLookupTableData" in ds
    if samples == 3 or (photometric == "PALETTE COLOR" and not has_lut):
        if samples != 3:
            values = snapshot.pixels(uid, rgb=True)
            for keyword in _PALETTE_TAGS:
                if keyword in ds:
                    delattr(ds, keyword)
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        if values.dtype.itemsize == 1:
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    frames = values.shape[0]
    if frames > 1 or "NumberOfFrames" in ds:
        ds.NumberOfFrames = frames
    data = np.ascontiguousarray(values).tobytes()
    if len(data) % 2:
        data += b"\0"
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if values.dtype.itemsize == 1 else "OW"


def _set_file_meta(ds: Dataset) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta
