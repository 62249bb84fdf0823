"""Which slice of a volume lies at a point in patient coordinates (LPS, mm).

A slice is the plane through its ImagePositionPatient spanned by the row and column directions;
the distance of a point to it is measured along the plane's normal. This holds with gantry tilt
(the volume's ``z`` axis is then not the normal) and with irregular spacing (every slice's own
position is used, not ``origin + k * spacing``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lake.errors import GeometryError
from lake.pixels.volume import Volume


def plane_normal(volume: Volume) -> np.ndarray:
    """Unit normal of the volume's slices: cross(row direction, column direction)."""
    row_dir, col_dir = volume.direction[:, 2], volume.direction[:, 1]
    normal = np.cross(row_dir, col_dir)
    return normal / np.linalg.norm(normal)


def slice_plane_distances(volume: Volume, point: Sequence[float] | np.ndarray) -> np.ndarray:
    """Signed distance (mm, along the normal) from each slice's plane to ``point``, in slice order."""
    p = np.asarray(point, dtype=float)
    if p.shape != (3,):
        raise GeometryError(f"a point in patient coordinates has 3 values (x, y, z in mm), not {p.shape}")
    return (p - np.asarray(volume.positions, dtype=float)) @ plane_normal(volume)


def nearest_slice(volume: Volume, point: Sequence[float] | np.ndarray) -> int:
    """Index of the slice whose plane is nearest to ``point`` (LPS mm); ties go to the lower index."""
    return int(np.argmin(np.abs(slice_plane_distances(volume, point))))


def slice_center(volume: Volume, index: int) -> np.ndarray:
    """LPS position (mm) of the centre of slice ``index``."""
    rows, cols = volume.array.shape[1:3]
    row_dir, col_dir = volume.direction[:, 2], volume.direction[:, 1]
    row_spacing, col_spacing = volume.spacing[1], volume.spacing[2]
    # ImagePositionPatient is the centre of the first pixel; the image centre is half the extent away
    return (
        np.asarray(volume.positions[index], dtype=float)
        + row_dir * col_spacing * (cols - 1) / 2
        + col_dir * row_spacing * (rows - 1) / 2
    )


def shared_point(current: Volume, prior: Volume) -> np.ndarray:
    """A point (LPS, mm) both volumes cover: the centre of the current's slice nearest to the middle
    of the stretch along the current's slice normal that both volumes span.

    A good ``point`` for :func:`~lake.viz.side_by_side` when the prior covers another extent than
    the current (the default point, the current's middle slice, may lie outside the prior). When
    both series lie on one grid of slice positions, as a scanner's series of one patient often do,
    the prior has a slice through this point too. Raises :class:`GeometryError` when the volumes
    share no stretch of the normal.
    """
    normal = plane_normal(current)
    along = np.asarray(current.positions, dtype=float) @ normal
    prior_along = np.asarray(prior.positions, dtype=float) @ normal
    low, high = max(along.min(), prior_along.min()), min(along.max(), prior_along.max())
    if low > high:
        raise GeometryError(
            f"the volumes share no position along the slice normal (current {along.min():.1f} to "
            f"{along.max():.1f} mm, prior {prior_along.min():.1f} to {prior_along.max():.1f} mm): "
            "give side_by_side a point, or compare series that cover the same anatomy"
        )
    return slice_center(current, int(np.argmin(np.abs(along - (low + high) / 2))))


def angle_between_slices(a: Volume, b: Volume) -> float:
    """Angle between the slice planes of two volumes, degrees (0 for parallel slices)."""
    cosine = abs(float(plane_normal(a) @ plane_normal(b)))
    return float(np.degrees(np.arccos(min(1.0, cosine))))
