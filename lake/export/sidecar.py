"""BIDS JSON sidecars for exported volumes, with the fields dcm2niix writes where the lake has them.

Values come from the lake's ``instances`` row of the series' first instance (already
de-identified: dates are the lake's shifted dates, identifiers its pseudonyms; no identifier is
written at all) and from the volume's geometry. Times follow BIDS: seconds (DICOM's milliseconds
divided by 1000). ``SliceTiming`` and the polarity come from the de-identified private headers the
lake keeps (:mod:`lake.export.slice_timing`: the Siemens CSA header from the ``bulk`` table, the
GE Protocol Data Block, re-written by the research profile, as is by pass-through).
``PhaseEncodingDirection`` needs the polarity (``PhaseEncodingDirectionPositive``); without it
only ``PhaseEncodingAxis`` is written, as dcm2niix does. The signs follow dcm2niix's voxel order
(rows flipped: ``j`` runs bottom to top). ``LakeSidecarNotes`` lists what the lake could not
derive for the series, and why.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from lake.pixels.volume import GeometryIssue, Volume

#: BIDS name -> instances column, copied as they are.
COPIED = {
    "Modality": "Modality",
    "MagneticFieldStrength": "MagneticFieldStrength",
    "ImagingFrequency": "ImagingFrequency",
    "Manufacturer": "Manufacturer",
    "ManufacturersModelName": "ManufacturerModelName",
    "SoftwareVersions": "SoftwareVersions",
    "BodyPartExamined": "BodyPartExamined",
    "PatientPosition": "PatientPosition",
    "MRAcquisitionType": "MRAcquisitionType",
    "SeriesDescription": "SeriesDescription",
    "ProtocolName": "ProtocolName",
    "ScanningSequence": "ScanningSequence",
    "SequenceVariant": "SequenceVariant",
    "ScanOptions": "ScanOptions",
    "SequenceName": "SequenceName",
    "ImageType": "ImageType",
    "SeriesNumber": "SeriesNumber",
    "AcquisitionNumber": "AcquisitionNumber",
    "SliceThickness": "SliceThickness",
    "SpacingBetweenSlices": "SpacingBetweenSlices",
    "SAR": "SAR",
    "FlipAngle": "FlipAngle",
    "EchoTrainLength": "EchoTrainLength",
    "PixelBandwidth": "PixelBandwidth",
    "PercentPhaseFOV": "PercentPhaseFieldOfView",
    "ReceiveCoilName": "ReceiveCoilName",
    "DiffusionBValue": "DiffusionBValue",
    "ConvolutionKernel": "ConvolutionKernel",
    "KVP": "KVP",
    "XRayTubeCurrent": "XRayTubeCurrent",
    "ExposureTime": "ExposureTime",
    "ReconstructionDiameter": "ReconstructionDiameter",
    "GantryDetectorTilt": "GantryDetectorTilt",
}
#: BIDS name -> instances column in milliseconds, written in seconds.
SECONDS = {"EchoTime": "EchoTime", "RepetitionTime": "RepetitionTime", "InversionTime": "InversionTime"}
_AXIS = {"ROW": "i", "COL": "j"}


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return value


def phase_encoding(direction: str | None, positive: int | None) -> dict[str, str]:
    """``PhaseEncodingDirection`` (with the CSA polarity) or ``PhaseEncodingAxis`` (without)."""
    axis = _AXIS.get(str(direction or "").upper())
    if axis is None:
        return {}
    if positive is None:
        return {"PhaseEncodingAxis": axis}
    # dcm2niix's convention for its flipped rows: COL positive is j-, ROW positive is i
    flip = (axis == "j") == (positive == 1)
    return {"PhaseEncodingDirection": axis + ("-" if flip else "")}


def sidecar(
    row: Mapping[str, Any],
    vol: Volume,
    slice_timing: Sequence[float] | None = None,
    phase_positive: int | None = None,
    notes: Sequence[str] = (),
    not_derived: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON sidecar of one written volume (``row``: the series' first instances row)."""
    out: dict[str, Any] = {}
    for name, column in COPIED.items():
        value = row.get(column)
        if value is not None and value != "" and value != []:
            out[name] = _plain(value)
    for name, column in SECONDS.items():
        value = row.get(column)
        if isinstance(value, int | float):
            out[name] = round(float(value) / 1000.0, 6)
    date, time = row.get("AcquisitionDate"), row.get("AcquisitionTime")
    if isinstance(date, dt.date) and isinstance(time, dt.time):
        out["AcquisitionDateTime"] = dt.datetime.combine(date, time).isoformat()  # the lake's shifted date
    elif isinstance(time, dt.time):
        out["AcquisitionTime"] = time.isoformat()
    direction = row.get("InPlanePhaseEncodingDirection")
    if direction:
        out["InPlanePhaseEncodingDirectionDICOM"] = str(direction)
    out.update(phase_encoding(direction, phase_positive))
    if slice_timing is not None:
        out["SliceTiming"] = [round(float(t), 6) for t in slice_timing]
    tilt = [f.detail for f in vol.findings if f.issue is GeometryIssue.GANTRY_TILT]
    if tilt:
        out["GantryTiltGeometry"] = tilt[0]
    if notes:
        out["LakeGeometryNotes"] = list(notes)
    if not_derived:
        out["LakeSidecarNotes"] = list(not_derived)  # fields dcm2niix might write that the lake cannot
    out["ConversionSoftware"] = "lake export nifti"
    return out
