"""Images of volumes: a study beside its prior at one anatomical position, montages of slices."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lake.errors import GeometryError
from lake.pixels.volume import Volume, apply_window, window_or_default
from lake.viz.position import angle_between_slices, nearest_slice, slice_center, slice_plane_distances

#: Largest angle (degrees) between two volumes' slice planes, or row directions, that
#: :func:`side_by_side` still shows side by side.
MAX_ANGLE_DEGREES = 10.0


def matched_slices(
    current: Volume, prior: Volume, point: Sequence[float] | np.ndarray | None = None
) -> tuple[int, int, np.ndarray]:
    """(current slice, prior slice, point): the slices of both volumes nearest to ``point``.

    ``point`` is in patient coordinates (LPS, mm); by default the centre of the current volume's
    middle slice. Slices are matched by position, never by index, so volumes with different slice
    spacing, extent or offsets line up. Raises :class:`GeometryError` when the slice planes are
    not parallel within :data:`MAX_ANGLE_DEGREES`.
    """
    angle = angle_between_slices(current, prior)
    if angle > MAX_ANGLE_DEGREES:
        raise GeometryError(
            f"the prior's slices lie at {angle:.1f} degrees to the current's (at most {MAX_ANGLE_DEGREES:g}); "
            "compare series of the same orientation (series.orientation in SQL)"
        )
    rows_angle = float(np.degrees(np.arccos(min(1.0, abs(float(current.direction[:, 2] @ prior.direction[:, 2]))))))
    if rows_angle > MAX_ANGLE_DEGREES:
        raise GeometryError(
            f"the prior's image rows lie at {rows_angle:.1f} degrees to the current's (at most "
            f"{MAX_ANGLE_DEGREES:g}); compare series of the same orientation"
        )
    at = slice_center(current, current.array.shape[0] // 2) if point is None else np.asarray(point, dtype=float)
    return nearest_slice(current, at), nearest_slice(prior, at), at


def _center_width(window: tuple[float, float] | None) -> tuple[float | None, float | None]:
    return (None, None) if window is None else (float(window[0]), float(window[1]))


def _extent(volume: Volume, index: int, row_dir: np.ndarray, col_dir: np.ndarray) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) in mm along the reference row and column directions."""
    rows, cols = volume.array.shape[1:3]
    row_spacing, col_spacing = volume.spacing[1], volume.spacing[2]
    first = np.asarray(volume.positions[index], dtype=float)  # centre of the first pixel
    u, v = float(first @ row_dir), float(first @ col_dir)
    return (u - col_spacing / 2, u + (cols - 0.5) * col_spacing, v + (rows - 0.5) * row_spacing, v - row_spacing / 2)


def slice_values(volume: Volume, index: int) -> np.ndarray:
    """Modality values (HU for CT) of one slice, float32, as :meth:`Volume.hu` computes them."""
    out = volume.array[index].astype(np.float32)
    if volume.slopes[index] != 1.0:
        out *= np.float32(volume.slopes[index])
    if volume.intercepts[index] != 0.0:
        out += np.float32(volume.intercepts[index])
    return out


def _axis_label(direction: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(direction)))
    towards = ("R", "A", "F") if direction[axis] < 0 else ("L", "P", "H")
    return f"mm towards {towards[axis]} ({'xyz'[axis]})"


def side_by_side(
    current: Volume,
    prior: Volume,
    point: Sequence[float] | np.ndarray | None = None,
    *,
    window: tuple[float, float] | None = None,
    titles: tuple[str, str] = ("current", "prior"),
    cmap: str = "gray",
) -> Figure:
    """The current study's slice beside the prior's at the same anatomical position, in one window.

    Both slices are the ones nearest to ``point`` (patient coordinates, LPS mm; default the centre
    of the current's middle slice, see :func:`matched_slices`); each title says which slice and
    how far its plane lies from the point. Both images are drawn in millimetres along the current
    image's row and column directions (shared axes), so different pixel spacings and fields of
    view line up too. ``window`` = (center, width) of modality values (HU for CT) applies to both;
    by default the current series' own window, else the 1st to 99th percentile of the current
    slice. The images (``ax.images[0]``) hold the windowed values in [0, 1].

    Patient coordinates agree across studies only as far as the patient lay alike on the table:
    the lake does not register images, so the match is by the scanner's coordinates.
    """
    k_current, k_prior, at = matched_slices(current, prior, point)
    current_values = slice_values(current, k_current)
    center, width = window_or_default(current_values, *_center_width(window), current.default_window)
    figure = Figure(figsize=(10.0, 5.8), layout="constrained")
    axes = figure.subplots(1, 2, sharex=True, sharey=True)
    row_dir, col_dir = current.direction[:, 2], current.direction[:, 1]
    for ax, volume, index, title in zip(axes, (current, prior), (k_current, k_prior), titles, strict=True):
        values = slice_values(prior, index) if volume is prior else current_values
        ax.imshow(
            apply_window(values, center, width),
            cmap=cmap,
            vmin=0.0,
            vmax=1.0,
            extent=_extent(volume, index, row_dir, col_dir),
            interpolation="nearest",
        )
        distance = float(slice_plane_distances(volume, at)[index])
        ax.set_title(f"{title}: slice {index + 1} of {volume.array.shape[0]}, {abs(distance):.1f} mm from the point")
        ax.set_xlabel(_axis_label(row_dir))
    axes[0].set_ylabel(_axis_label(col_dir))
    where = ", ".join(f"{c:.1f}" for c in at)
    figure.suptitle(f"at LPS ({where}) mm; window center {center:g}, width {width:g}")
    return figure


def montage(
    volume: Volume | np.ndarray,
    count: int = 16,
    *,
    columns: int | None = None,
    window: tuple[float, float] | None = None,
    cmap: str = "gray",
    tile_inches: float = 2.0,
) -> Figure:
    """Up to ``count`` evenly spaced slices of a volume (or a ``(z, y, x)`` array), one axes each.

    A :class:`Volume` is shown as modality values in ``window`` (center, width; default the
    series' own window, else the 1st to 99th percentile of the whole volume), each slice titled
    with its index and its position along the slice normal (mm); an array is shown as is, scaled
    to its own range. ``figure.axes`` holds one axes per slice shown, in slice order.
    """
    along: np.ndarray | None = None
    if isinstance(volume, Volume):
        values = volume.hu()
        center, width = window_or_default(values, *_center_width(window), volume.default_window)
        normal = np.cross(volume.direction[:, 2], volume.direction[:, 1])
        along = np.asarray(volume.positions, dtype=float) @ normal
    else:
        values = np.asarray(volume)
        if values.ndim != 3:
            raise GeometryError(f"montage() shows slices of a (z, y, x) array, not shape {values.shape}")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    picks = np.unique(np.linspace(0, values.shape[0] - 1, max(1, min(count, values.shape[0]))).round().astype(int))
    columns = columns or int(np.ceil(np.sqrt(len(picks))))
    rows = int(np.ceil(len(picks) / columns))
    figure = Figure(figsize=(tile_inches * columns, tile_inches * rows + 0.3), layout="constrained")
    for n, k in enumerate(picks):
        ax: Axes = figure.add_subplot(rows, columns, n + 1)
        if along is None:  # an array: its own range
            ax.imshow(values[k], cmap=cmap, vmin=low, vmax=high if high > low else low + 1, interpolation="nearest")
        else:
            ax.imshow(apply_window(values[k], center, width), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"{k}" if along is None else f"{k}: {along[k]:.1f} mm", fontsize="small")
        ax.set_axis_off()
    return figure
