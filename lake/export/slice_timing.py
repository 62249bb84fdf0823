"""SliceTiming and the phase-encoding polarity of the JSON sidecar, read from the lake's own headers.

Nothing here reads an original file: the values come from the de-identified header of the
series' first instance (``lk.header(uid, bulk=True)``, large binary values from the ``bulk``
table), as dcm2niix reads them from the originals.

**Siemens**: the CSA image header (0029,xx10), which the de-identification keeps rewritten with
its safelisted elements only (:mod:`lake.deid.csa`) and which the lake stores as a bulk value:
``MosaicRefAcqTimes`` (ms, one per slice in the written slice order) and
``PhaseEncodingDirectionPositive`` (the polarity).

**GE**: dcm2niix estimates the slice times of EPI (epiRT fMRI and multi-phase EPI) from the
gzip-compressed Protocol Data Block (0025,xx1B): ``SLICEORDER`` (0 sequential, else interleaved),
``MBACCEL`` and ``IOPT``, with ``RepetitionTime`` (``sliceTimeGE`` of dcm2niix's
``nii_dicom_batch.cpp``): ``n`` slices are excited ``RepetitionTime / n`` apart, sequentially from
the first prescribed location (the instance numbered first) or interleaved (even indices first,
then odd). (0018,0080) omits GE's group delay, so dcm2niix adds the delay to TR and subtracts it
again: the group delay never changes the slice times, and is not read here. The research profile
keeps the block re-written with its allow-listed lines only (:mod:`lake.deid.ge_protocol`), so
research and pass-through lakes both get the times dcm2niix writes; a lake without the block (an
older lake, a block the de-identification could not parse) writes no SliceTiming and says why in
``LakeSidecarNotes``. Not derived: HyperBand (MBACCEL > 1), multi-phase EPI with variable delays,
diffusion, GE's per-slice RTIA timer (0021,xx5E, zero on these scanners), and the phase polarity
of GE (a bit of its binary raw header (0043,xx2A), which the research profile removes and this
module does not decode): GE sidecars have ``PhaseEncodingAxis``, not ``PhaseEncodingDirection``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lake.deid.ge_protocol import GeProtocolError, parse
from lake.pixels.mosaic import CSA_IMAGE_TAG, csa_values
from lake.pixels.volume import Volume

if TYPE_CHECKING:
    from lake.core import Lake

GE_SERIES_CREATOR = "GEMS_SERS_01"
GE_PROTOCOL_ELEMENT = 0x1B  # (0025,xx1B) Protocol Data Block (compressed)

GE_NO_PROTOCOL = (
    "SliceTiming: not derivable for this GE series: the slice order (interleaved or sequential) is only "
    "in the Protocol Data Block (0025,xx1B), which is not in the lake for this series (removed by its "
    "profile, or unparsable)"
)
GE_NO_POLARITY = (
    "PhaseEncodingDirection: the GE phase polarity (in the binary raw header (0043,xx2A), which the research "
    "profile removes) is not derived; only PhaseEncodingAxis is written"
)
SIEMENS_NO_CSA = (
    "SliceTiming, PhaseEncodingDirection: the Siemens CSA image header (0029,xx10) is not in the lake "
    "for this series (removed by its profile, or over the bulk caps)"
)


@dataclass
class Timing:
    """What the sidecar gets: SliceTiming in seconds in the written slice order, the polarity
    (``PhaseEncodingDirectionPositive``), and notes on what could not be derived."""

    slice_timing: list[float] | None = None
    polarity: int | None = None
    notes: list[str] = field(default_factory=list)


def _first_instance(lk: Lake, series_uid: str) -> tuple[str, str, Any] | None:
    rows = (
        lk.connection()
        .execute(
            "SELECT SOPInstanceUID, Manufacturer, ImagePositionPatient FROM instances WHERE SeriesInstanceUID = ? "
            "AND pixel_array IS NOT NULL ORDER BY InstanceNumber NULLS LAST, SOPInstanceUID LIMIT 1",
            [series_uid],
        )
        .fetchall()
    )
    return (str(rows[0][0]), str(rows[0][1] or ""), rows[0][2]) if rows else None


def _binary(element: Mapping[str, Any] | None) -> bytes | None:
    inline = (element or {}).get("InlineBinary")
    return base64.b64decode(inline) if isinstance(inline, str) else None


def private_element(header: Mapping[str, Any], group: int, creator: str, element: int) -> Mapping[str, Any] | None:
    """The DICOM JSON element ``(group, xx<element>)`` of the private block reserved by ``creator``."""
    for block in range(0x10, 0x100):
        reserved = header.get(f"{group:04X}00{block:02X}") or {}
        values = reserved.get("Value") or []
        if values and str(values[0]).strip() == creator:
            found = header.get(f"{group:04X}{block:02X}{element:02X}")
            return found if isinstance(found, Mapping) else None
    return None


def ge_protocol(data: bytes) -> dict[str, str]:
    """``KEY "value"`` pairs of a GE Protocol Data Block (:func:`lake.deid.ge_protocol.parse`); {} when unreadable."""
    try:
        return parse(data)
    except GeProtocolError:
        return {}


def _number(value: Any) -> float | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    try:
        return float(value) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        return None


def ge_acquisition_times(
    protocol: Mapping[str, str], tr_ms: float, slices: int
) -> tuple[list[float] | None, str | None]:
    """Slice times in ms by position from the first prescribed location (dcm2niix's ``sliceTimeGE``
    for single-band EPI), or (None, why not). ``tr_ms`` is (0018,0080), which omits the group delay."""
    iopt = protocol.get("IOPT", "")
    order = protocol.get("SLICEORDER")
    mb = int(_number(protocol.get("MBACCEL")) or 1)
    if order is None:
        return None, "SliceTiming: the GE Protocol Data Block has no SLICEORDER"
    if mb > 1:
        return None, "SliceTiming: GE HyperBand (MBACCEL > 1) slice times are not derived"
    if "FMRI" not in iopt and "MPhVar" in iopt:  # dcm2niix's order: FMRI first, then multi-phase
        return None, "SliceTiming: GE multi-phase EPI with variable delays is not supported (as in dcm2niix)"
    if "FMRI" not in iopt and "MPh" not in iopt:
        return None, "SliceTiming: only GE EPI fMRI (IOPT FMRI) and multi-phase EPI (MPh) have derivable slice times"
    step = tr_ms / slices
    if order.strip() == "0":
        return [i * step for i in range(slices)], None
    odd = (slices - 1) // 2
    return [(i // 2 if i % 2 == 0 else odd + (i + 1) // 2) * step for i in range(slices)], None


def _written_order(times: Sequence[float], vol: Volume, first_position: Any) -> list[float]:
    """Times by acquisition position (from the first prescribed slice) put in the volume's slice order."""
    positions = np.asarray(vol.positions, dtype=float).reshape(-1, 3)[: len(times)]
    start = np.asarray(first_position, dtype=float)
    rank = np.argsort(np.argsort(np.linalg.norm(positions - start, axis=1), kind="stable"), kind="stable")
    return [float(times[int(r)]) for r in rank]


def _siemens(header: Mapping[str, Any], slices: int) -> Timing:
    data = _binary(header.get(CSA_IMAGE_TAG))
    if data is None:
        return Timing(notes=[SIEMENS_NO_CSA])
    values = csa_values(data)
    positive = values.get("PhaseEncodingDirectionPositive")
    polarity = int(positive[0]) if positive and positive[0] in ("0", "1") else None
    times = [float(t) / 1000.0 for t in values.get("MosaicRefAcqTimes", [])]
    if len(times) < slices:  # not a mosaic (dcm2niix then reads per-slice times: not derived here)
        return Timing(None, polarity)
    return Timing(times[:slices], polarity)


def _ge(header: Mapping[str, Any], vol: Volume, first_position: Any) -> Timing:
    notes = [GE_NO_POLARITY]
    data = _binary(private_element(header, 0x0025, GE_SERIES_CREATOR, GE_PROTOCOL_ELEMENT))
    protocol = ge_protocol(data) if data else {}
    if not protocol:
        return Timing(notes=[GE_NO_PROTOCOL, *notes])
    tr = _number((header.get("00180080") or {}).get("Value"))
    if not tr or first_position is None:
        return Timing(notes=["SliceTiming: no RepetitionTime or ImagePositionPatient", *notes])
    slices = int(vol.array.shape[-3])
    times, why = ge_acquisition_times(protocol, tr, slices)
    if times is None:
        return Timing(notes=[str(why), *notes])
    return Timing([round(t / 1000.0, 6) for t in _written_order(times, vol, first_position)], None, notes)


def slice_timing(lk: Lake, series_uid: str, vol: Volume) -> Timing:
    """The sidecar's SliceTiming and polarity for a Siemens or GE MR series (see the module docstring)."""
    first = _first_instance(lk, series_uid)
    if first is None:
        return Timing()
    sop, manufacturer, position = first
    maker = manufacturer.upper()
    if not (maker.startswith("SIEMENS") or maker.startswith("GE")):
        return Timing()
    header = lk.header(sop, bulk=True)
    if str((header.get("00080060") or {}).get("Value", [""])[0]) != "MR":
        return Timing()
    slices = int(vol.array.shape[-3])
    if maker.startswith("SIEMENS"):
        return _siemens(header, slices)
    if "EP" not in [str(v) for v in (header.get("00180020") or {}).get("Value", [])]:
        return Timing()  # slice times matter for EPI only (dcm2niix estimates GE's for EPI only)
    return _ge(header, vol, position)
