"""Per-frame geometry and value transforms of a series, from the instances table.

Single-frame instances carry them in promoted columns. Enhanced multi-frame instances carry them
in the per-frame and shared functional groups of the full header (``header_json``, DICOM JSON
model); the promoted columns only hold the first frame's values.
"""

from __future__ import annotations

import json
from typing import Any

from lake.pixels.volume import FrameRef, first_number

SHARED_GROUPS = "52009229"
PER_FRAME_GROUPS = "52009230"
PLANE_POSITION = ("00209113", "00200032")
PLANE_ORIENTATION = ("00209116", "00200037")
PIXEL_MEASURES = ("00289110", "00280030")
VALUE_TRANSFORM = ("00289145", "00281052", "00281053")  # sequence, intercept, slope
FRAME_VOI = ("00289132", "00281050", "00281051")  # sequence, center, width

SERIES_FRAMES_SQL = (
    "SELECT pixel_array, pixel_frame_start, frame_count, InstanceNumber, ImagePositionPatient, "
    "ImageOrientationPatient, PixelSpacing, RescaleSlope, RescaleIntercept, WindowCenter, WindowWidth, "
    "SliceThickness, RepetitionTime, "
    "CASE WHEN frame_count > 1 THEN header_json END AS header_json "
    "FROM instances WHERE SeriesInstanceUID = ? AND pixel_array IS NOT NULL AND frame_count > 0"
)


def _values(item: dict[str, Any] | None, seq_tag: str, tag: str) -> list[Any] | None:
    if not item:
        return None
    seq = item.get(seq_tag, {}).get("Value") or []
    if not seq:
        return None
    value = seq[0].get(tag, {}).get("Value")
    return list(value) if value else None


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _window(center: Any, width: Any) -> tuple[float, float] | None:
    c, w = first_number(center), first_number(width)
    return (c, w) if c is not None and w is not None and w >= 1 else None


def _single(row: dict[str, Any], frame: int) -> FrameRef:
    position = _floats(row["ImagePositionPatient"], 3)
    spacing = _floats(row["PixelSpacing"], 2)
    return FrameRef(
        array=row["pixel_array"],
        index=int(row["pixel_frame_start"]) + frame,
        position=position,  # type: ignore[arg-type]
        orientation=_floats(row["ImageOrientationPatient"], 6),
        pixel_spacing=spacing,  # type: ignore[arg-type]
        slope=first_number(row["RescaleSlope"]) or 1.0,
        intercept=first_number(row["RescaleIntercept"]) or 0.0,
        window=_window(row["WindowCenter"], row["WindowWidth"]),
        order=(int(row["InstanceNumber"] or 0), frame),
        thickness=first_number(row.get("SliceThickness")),
        repetition_time=first_number(row.get("RepetitionTime")),
    )


def _lookup(per: dict[str, Any] | None, shared: dict[str, Any] | None, seq: str, tag: str) -> list[Any] | None:
    found = _values(per, seq, tag)
    return found if found is not None else _values(shared, seq, tag)


def _multi(row: dict[str, Any]) -> list[FrameRef]:
    count = int(row["frame_count"])
    header = json.loads(row["header_json"]) if row.get("header_json") else {}
    per_frame = header.get(PER_FRAME_GROUPS, {}).get("Value") or []
    shared_items = header.get(SHARED_GROUPS, {}).get("Value") or []
    shared = shared_items[0] if shared_items else None
    if not per_frame and shared is None:
        return [_single(row, i) for i in range(count)]  # legacy multi-frame: one geometry for all frames
    base = _single(row, 0)
    out = []
    for i in range(count):
        per = per_frame[i] if i < len(per_frame) else None
        intercept = _lookup(per, shared, VALUE_TRANSFORM[0], VALUE_TRANSFORM[1])
        slope = _lookup(per, shared, VALUE_TRANSFORM[0], VALUE_TRANSFORM[2])
        out.append(
            FrameRef(
                array=base.array,
                index=base.index + i,
                position=_floats(_lookup(per, shared, *PLANE_POSITION), 3),  # type: ignore[arg-type]
                orientation=_floats(_lookup(per, shared, *PLANE_ORIENTATION), 6),
                pixel_spacing=_floats(_lookup(per, shared, *PIXEL_MEASURES), 2),  # type: ignore[arg-type]
                slope=(first_number(slope) or 1.0) if slope else base.slope,
                intercept=(first_number(intercept) or 0.0) if intercept else base.intercept,
                window=_window(
                    _lookup(per, shared, FRAME_VOI[0], FRAME_VOI[1]), _lookup(per, shared, FRAME_VOI[0], FRAME_VOI[2])
                )
                or base.window,
                order=(base.order[0], i),
                thickness=base.thickness,
                repetition_time=base.repetition_time,
            )
        )
    return out


def frame_refs(rows: list[dict[str, Any]]) -> list[FrameRef]:
    """Every stored frame of the rows of one series (as returned by ``SERIES_FRAMES_SQL``)."""
    out: list[FrameRef] = []
    for row in rows:
        out.extend(_multi(row) if int(row["frame_count"]) > 1 else [_single(row, 0)])
    return out
