"""Turning one input file's bytes into a de-identified instance row and its frames, or a rejection.

This runs in worker processes: it holds the key in memory only and touches no lake files.
Every warning and log record raised while a file is processed (pydicom, the pixel decoders,
``deid``) is captured (:mod:`lake.diagnostics`) and returned with the outcome as reason codes plus
messages, never printed: the messages quote the file.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.errors import InvalidDicomError

from lake import diagnostics
from lake.config import BulkSettings
from lake.deid.engine import Deidentifier, convert_values
from lake.deid.identity import IdentityFacts
from lake.deid.passthrough import PassThrough
from lake.deid.pixels import PixelPolicy, SeriesSample, assess, decide
from lake.diagnostics import FileWarning
from lake.errors import RejectedInput
from lake.headers.bulk import BulkValue
from lake.headers.flatten import header_and_bulk, promoted_row
from lake.headers.schema import TableSchema, load_table_schema
from lake.pixels.decode import decode, decoded_photometric, stored_value_attributes

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@dataclass
class Processed:
    """A de-identified instance ready to store."""

    row: dict[str, Any]
    frames: np.ndarray | None
    counts: Counter[tuple[str, str]]
    patient_pseudonym: str
    original_patient_id: str = field(repr=False)  # for the optional crosswalk in the vault only
    array_attributes: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[FileWarning, ...] = ()  # codes are PHI-free; messages go to the vault log only
    identity: IdentityFacts | None = None  # keyed digests for the vault's identity ledger
    held: np.ndarray | None = field(default=None, repr=False)  # quarantined: the unmasked frames (vault only)
    bulk: list[BulkValue] = field(default_factory=list, repr=False)  # rows of the bulk table
    sample: SeriesSample | None = None  # of a sampled series: read by OCR or not (lake.ingest.sampling)


@dataclass(frozen=True)
class Rejection:
    """An input file that is not ingested: PHI-free ``stage`` and ``reason``; ``detail`` and the
    warnings' messages may quote the file and go to the vault's run log only."""

    stage: str
    reason: str
    detail: str = field(default="", repr=False)
    warnings: tuple[FileWarning, ...] = ()


def content_digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def parse(data: bytes, private_values: bool = True) -> Dataset:
    """Parse DICOM Part 10 bytes (or a preamble-less dataset with SOP UIDs); reject anything else.

    pydicom returns what it could read from a truncated file with only a warning; a truncated
    file is rejected here so that no instance is stored with half a header. Every value is
    converted now, so that a corrupt one is found here and not in a writer; with ``private_values``
    false the values of private data elements (not their creators) are left raw, for a
    de-identifier that converts only the ones it keeps and rejects those the same way
    (:attr:`lake.deid.engine.Deidentifier.converts_private_values`: most private elements are
    removed, and converting them was half of the parse).
    """
    with diagnostics.capture() as caught:
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except InvalidDicomError:
            try:
                ds = pydicom.dcmread(io.BytesIO(data), force=True)
            except Exception as exc:
                raise RejectedInput("parse", "not_dicom", repr(exc)) from exc
            if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
                raise RejectedInput("parse", "not_dicom") from None
        except Exception as exc:
            raise RejectedInput("parse", f"malformed:{type(exc).__name__}", repr(exc)) from exc
        _check_complete(ds, len(data))
        try:
            convert_values(ds, private_values)
        except Exception as exc:
            raise RejectedInput("parse", f"malformed:{type(exc).__name__}", repr(exc)) from exc
        for message in caught.messages:
            text = message.lower()
            if "end of file" in text or "truncat" in text:
                raise RejectedInput("parse", "truncated", message)
    return ds


def _check_complete(ds: Dataset, size: int) -> None:
    """Reject a file whose last element's value runs past its end, or that ends in a partial header."""
    end = 0
    undefined_last = False
    for tag in list(ds.keys()):  # keys, not elements: iterating would convert the raw elements
        raw = ds.get_item(tag)
        tell = getattr(raw, "value_tell", None)
        length = getattr(raw, "length", None)
        if tell is None or length is None:
            continue
        if length == 0xFFFFFFFF:
            undefined_last = tell >= end
            end = max(end, tell)
            continue
        if tell + length >= end:
            undefined_last = False
        end = max(end, tell + length)
    if undefined_last:
        return  # the reader found the delimiters of the last element, or warned of EOF
    if end > size or 0 < size - end < 12:  # 12: the longest element header (explicit VR, long length)
        raise RejectedInput("parse", "truncated")


def validate(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == DICOMDIR_CLASS:
        raise RejectedInput("validate", "dicomdir_not_an_instance")
    if "DirectoryRecordSequence" in ds:
        raise RejectedInput("validate", "dicomdir_not_an_instance")
    uid = str(ds.get("SOPInstanceUID", "") or "").strip()
    if not uid:
        raise RejectedInput("validate", "missing_sop_instance_uid")
    if not str(ds.get("SOPClassUID", "") or "").strip():
        raise RejectedInput("validate", "missing_sop_class_uid")


def _array_attributes(ds: Dataset, row: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "PhotometricInterpretation",
        "BitsStored",
        "PixelRepresentation",
        "RescaleSlope",
        "RescaleIntercept",
        "RescaleType",
        "WindowCenter",
        "WindowWidth",
        "PixelSpacing",
        "ImageOrientationPatient",
        "FrameOfReferenceUID",
        "SeriesInstanceUID",
        "Modality",
        "SamplesPerPixel",
        "BitsAllocated",
        "HighBit",
        "PlanarConfiguration",
        "SliceThickness",
        "SpacingBetweenSlices",
        "ImagePositionPatient",  # of the array's first instance; per-frame positions: the instances table
    )
    attrs = {k: row.get(k) for k in keys if row.get(k) is not None}
    attrs.update(stored_value_attributes(ds))
    return attrs


def process(
    data: bytes,
    deidentifier: Deidentifier | PassThrough,
    policy: PixelPolicy | str,
    schema: TableSchema | None = None,
    bulk: BulkSettings | None = None,
    every_instance: bool = False,
) -> Processed:
    """Parse, validate, decode, de-identify and flatten one file. Raises :class:`RejectedInput`.

    ``bulk`` caps the large binary values kept for the ``bulk`` table (default: the defaults of
    :class:`lake.config.BulkSettings`); ``every_instance`` has OCR read the file even where its
    series is sampled (:func:`lake.deid.pixels.decide`)."""
    schema = schema or load_table_schema("instances")
    bulk = bulk or BulkSettings()
    ds = parse(data, private_values=not getattr(deidentifier, "converts_private_values", False))
    validate(ds)
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    with diagnostics.capture():  # an enclosing process_file() collects them
        pixels = decode(ds)
        assessment = assess(ds)  # burned-in rules read the original header
        try:
            result = deidentifier.deidentify(ds)
        except RejectedInput:
            raise
        except Exception as exc:
            raise RejectedInput("deidentify", f"deidentify_failed:{type(exc).__name__}", repr(exc)) from exc
        decision = decide(ds, pixels, policy, assessment, every_instance)  # OCR reads images at risk
        frames, pixel_status, pixel_reason = decision.frames, decision.status, decision.reason
        try:
            row = promoted_row(ds, schema)
            row["header_json"], kept = header_and_bulk(ds, bulk)
        except Exception as exc:
            raise RejectedInput("flatten", f"flatten_failed:{type(exc).__name__}", repr(exc)) from exc
    row["TransferSyntaxUID"] = transfer_syntax or None
    row["pixel_status"] = pixel_status
    row["pixel_reason"] = pixel_reason
    row.update(decision.phi.columns())
    row["frame_count"] = int(frames.shape[0]) if frames is not None else 0
    if frames is not None:
        row["pixel_dtype"] = frames.dtype.name
        row["pixel_bytes"] = int(frames.nbytes)
        row["pixel_sha256"] = hashlib.sha256(frames.tobytes()).hexdigest()
        row.update(stored_pixel_columns(ds, frames))
    row.update(bulk_values=len(kept.values), bulk_bytes=kept.bytes, bulk_omitted=kept.omitted)
    counts = result.counts + kept.counts
    return Processed(
        row=row,
        frames=frames,
        counts=counts,
        patient_pseudonym=result.patient_pseudonym,
        original_patient_id=result.original_patient_id,
        array_attributes=_array_attributes(ds, row),
        identity=result.identity,
        held=pixels.frames if pixel_status == "quarantined" else None,  # lake.review holds it in the vault
        bulk=kept.values,
        sample=decision.sample,
    )


def stored_pixel_columns(ds: Dataset, frames: np.ndarray) -> dict[str, Any]:
    """What the stored values are, for a header written with them: photometric interpretation (RGB
    after a YBR conversion), planar configuration (always colour-by-pixel) and bits allocated."""
    samples = int(frames.shape[-1]) if frames.ndim == 4 else 1
    return {
        "stored_photometric_interpretation": decoded_photometric(ds) or None,
        "stored_planar_configuration": 0 if samples > 1 else None,
        "stored_bits_allocated": int(frames.dtype.itemsize) * 8,
    }


def process_file(
    data: bytes,
    deidentifier: Deidentifier | PassThrough,
    policy: PixelPolicy | str,
    schema: TableSchema | None = None,
    bulk: BulkSettings | None = None,
    every_instance: bool = False,
) -> Processed | Rejection:
    """:func:`process` for one input file that never raises and reports what the libraries warned.

    One bad file must never end the run: any exception becomes a :class:`Rejection`.
    """
    with diagnostics.capture() as caught:
        try:
            result = process(data, deidentifier, policy, schema, bulk, every_instance)
        except RejectedInput as exc:
            return Rejection(exc.stage, exc.reason, exc.detail, caught.results())
        except Exception as exc:
            return Rejection("process", f"unexpected:{type(exc).__name__}", repr(exc), caught.results())
        result.warnings = caught.results()
        return result
