"""Slice geometry of an enhanced multi-frame instance, from its per-frame plane positions.

Classic single-frame series get the same measures in the ``series`` view (SQL over the promoted
``ImagePositionPatient``/``ImageOrientationPatient`` columns); a multi-frame instance carries its
positions in ``PerFrameFunctionalGroupsSequence`` only, so they are measured here at ingest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom import Dataset

from lake.headers.values import as_float_list, as_int

#: Spacings within this many mm (or 1 % of the spacing, whichever is larger) count as equal.
SPACING_TOLERANCE_MM = 0.01


def _nested(ds: Dataset, *keywords: str) -> Any:
    """Value at a keyword path, taking the first item of each sequence on the way (or None)."""
    node: Any = ds
    for keyword in keywords[:-1]:
        items = node.get(keyword) if isinstance(node, Dataset) else None
        if not items:
            return None
        node = items[0]
    return node.get(keywords[-1]) if isinstance(node, Dataset) else None


def slice_normal(orientation: list[float] | None) -> np.ndarray | None:
    """Unit normal (row cosines x column cosines) of an ImageOrientationPatient, or None."""
    if orientation is None or len(orientation) != 6:
        return None
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    norm = float(np.linalg.norm(normal))
    return normal / norm if norm > 1e-6 else None


def spacing_summary(positions: np.ndarray, normal: np.ndarray) -> dict[str, Any]:
    """Median spacing (mm), regularity and extent (mm) of positions projected on ``normal``."""
    along = np.sort(positions @ normal)
    gaps = np.diff(along)
    if not len(gaps):
        return {}
    spacing = float(np.median(gaps))
    tolerance = max(SPACING_TOLERANCE_MM, 0.01 * abs(spacing))
    regular = bool(spacing > tolerance and float(gaps.max() - gaps.min()) <= tolerance)
    return {
        "frame_slice_spacing": spacing,
        "frame_slices_regular": regular,
        "frame_slice_extent": float(along[-1] - along[0]),
    }


def frame_geometry(ds: Dataset) -> dict[str, Any]:
    """``frame_slice_spacing``, ``frame_slices_regular``, ``frame_slice_extent`` of a multi-frame
    instance with per-frame positions; {} for anything else."""
    frames = as_int(ds.get("NumberOfFrames")) or 0
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if frames < 2 or not per_frame or len(per_frame) < frames:
        return {}
    per_frame = per_frame[:frames]
    orientation = as_float_list(
        _nested(ds, "SharedFunctionalGroupsSequence", "PlaneOrientationSequence", "ImageOrientationPatient")
        or _nested(per_frame[0], "PlaneOrientationSequence", "ImageOrientationPatient")
    )
    normal = slice_normal(orientation)
    if normal is None:
        return {}
    positions = []
    for item in per_frame:
        position = as_float_list(_nested(item, "PlanePositionSequence", "ImagePositionPatient"))
        if position is None or len(position) != 3:
            return {}
        positions.append(position)
    return spacing_summary(np.asarray(positions, float), normal)
