"""Making a volume a regular grid before it is written: irregular spacing split or resampled,
gantry tilt resampled to an orthogonal grid.

A NIfTI affine is one uniform grid; a stack whose slices are not evenly spaced is never written
as if it were (``Volume.positions`` is the truth, see :mod:`lake.pixels.volume`). Resampling is
linear (along the slice normal for spacing, in the image plane for tilt, as dcm2niix corrects
tilt) and writes float32 modality values; positions outside the acquired slab are filled with
the volume's minimum.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lake.pixels.volume import GeometryIssue, Volume, slice_axis

IRREGULAR = frozenset({GeometryIssue.IRREGULAR_SPACING, GeometryIssue.MISSING_SLICES})


def _normal(vol: Volume) -> np.ndarray:
    n = np.cross(vol.direction[:, 2], vol.direction[:, 1])
    return n / np.linalg.norm(n)


def _along(vol: Volume) -> np.ndarray:
    """Each slice's distance along the slice normal from the first, mm."""
    return (vol.positions - vol.positions[0]) @ _normal(vol)


def is_irregular(vol: Volume) -> bool:
    return any(f.issue in IRREGULAR for f in vol.findings)


def is_tilted(vol: Volume) -> bool:
    return GeometryIssue.GANTRY_TILT in vol.issues


def regular_runs(vol: Volume, tolerance_mm: float = 0.01) -> list[tuple[int, int]]:
    """``[start, stop)`` slice ranges of equal spacing (a gap that differs starts a new run)."""
    gaps = np.diff(_along(vol))
    runs: list[tuple[int, int]] = []
    start = 0
    for i, gap in enumerate(gaps):
        first = gaps[start] if start < len(gaps) else gap
        if i > start and abs(gap - first) > max(tolerance_mm, 0.01 * abs(first)):
            runs.append((start, i + 1))
            start = i + 1
    runs.append((start, len(vol.positions)))
    return runs


def part(vol: Volume, start: int, stop: int) -> Volume:
    """Slices ``[start, stop)`` of a volume as a volume of their own, its slice axis refitted."""
    positions = vol.positions[start:stop]
    if len(positions) > 1:
        origin, step = slice_axis(positions)
        spacing = float(np.linalg.norm(step))
        z_dir = step / spacing
    else:
        origin, spacing, z_dir = positions[0], vol.spacing[0], vol.direction[:, 0]
    direction = vol.direction.copy()
    direction[:, 0] = z_dir
    findings = [f for f in vol.findings if f.issue not in IRREGULAR]
    return replace(
        vol,
        array=vol.array[..., start:stop, :, :],
        positions=positions,
        spacing=(spacing, vol.spacing[1], vol.spacing[2]),
        origin=(float(origin[0]), float(origin[1]), float(origin[2])),
        direction=direction,
        slopes=vol.slopes[..., start:stop],
        intercepts=vol.intercepts[..., start:stop],
        findings=findings,
    )


def _orthogonal(vol: Volume, values: np.ndarray, along: np.ndarray, issues: frozenset[GeometryIssue]) -> Volume:
    """Float32 ``values`` on slices at ``along`` mm on the slice normal from the first position."""
    normal = _normal(vol)
    direction = vol.direction.copy()
    direction[:, 0] = normal
    positions = vol.positions[0] + np.outer(along, normal)
    spacing = float(np.linalg.norm(slice_axis(positions)[1])) if len(along) > 1 else vol.spacing[0]
    ones = np.ones(values.shape[:-2])
    return replace(
        vol,
        array=values,
        spacing=(spacing, vol.spacing[1], vol.spacing[2]),
        origin=(float(positions[0][0]), float(positions[0][1]), float(positions[0][2])),
        direction=direction,
        positions=positions,
        slopes=ones,
        intercepts=ones * 0.0,
        findings=[f for f in vol.findings if f.issue not in issues],
    )


def resample_spacing(vol: Volume) -> Volume:
    """The volume linearly resampled along the slice normal to its smallest slice spacing."""
    along = _along(vol)
    gaps = np.diff(along)
    step = float(gaps[gaps > 1e-6].min()) if np.any(gaps > 1e-6) else vol.spacing[0]
    count = int(np.floor(along[-1] / step + 1e-6)) + 1
    targets = np.arange(count) * step
    values = vol.hu()
    upper = np.clip(np.searchsorted(along, targets, side="right"), 1, len(along) - 1)
    lower = upper - 1
    w = ((targets - along[lower]) / np.maximum(along[upper] - along[lower], 1e-9)).astype(np.float32)
    w = np.clip(w, 0.0, 1.0)[:, None, None]
    out = values[..., lower, :, :] * (1 - w) + values[..., upper, :, :] * w
    return _orthogonal(vol, out.astype(np.float32), targets, IRREGULAR)


def _shift(image: np.ndarray, dy: float, dx: float, fill: float) -> np.ndarray:
    """``out[y, x] = image[y - dy, x - dx]``, bilinear, ``fill`` outside."""
    rows, cols = image.shape
    y = np.arange(rows, dtype=float)[:, None] - dy
    x = np.arange(cols, dtype=float)[None, :] - dx
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0).astype(np.float32), (x - x0).astype(np.float32)
    out = np.zeros((rows, cols), dtype=np.float32)
    weight = np.zeros((rows, cols), dtype=np.float32)
    for oy, wy in ((0, 1 - fy), (1, fy)):
        for ox, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + oy, x0 + ox
            inside = (yy >= 0) & (yy < rows) & (xx >= 0) & (xx < cols)
            w = np.where(inside, wy * wx, 0.0).astype(np.float32)
            out += w * image[np.clip(yy, 0, rows - 1), np.clip(xx, 0, cols - 1)]
            weight += w
    return np.where(weight > 0.999, out, np.float32(fill)).astype(np.float32)


def correct_tilt(vol: Volume) -> Volume:
    """The tilted volume resampled slice by slice onto an orthogonal grid (the slice normal as
    its ``z`` axis, slice 0 where it was acquired)."""
    normal = _normal(vol)
    along = _along(vol)
    col_dir, row_dir = vol.direction[:, 1], vol.direction[:, 2]
    values = vol.hu()
    fill = float(values.min()) if values.size else 0.0
    out = np.empty_like(values, dtype=np.float32)
    for k in range(values.shape[-3]):
        offset = vol.positions[k] - vol.positions[0] - along[k] * normal
        dy, dx = float(offset @ col_dir) / vol.spacing[1], float(offset @ row_dir) / vol.spacing[2]
        for index in np.ndindex(*values.shape[:-3]):
            out[(*index, k)] = _shift(values[(*index, k)], dy, dx, fill)
    return _orthogonal(vol, out, along, frozenset({GeometryIssue.GANTRY_TILT}))
