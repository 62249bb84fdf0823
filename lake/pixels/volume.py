"""Series as volumes in patient space: slice order, geometry checks, affine, modality LUT, windowing.

Coordinates are DICOM patient coordinates (LPS: +x to the patient's left, +y posterior, +z head),
in millimetres. A :class:`Volume`'s ``array`` is ``(z, y, x)``: slices sorted along the slice
normal ``cross(row direction, column direction)`` of ImageOrientationPatient by the projection of
ImagePositionPatient on it (never by InstanceNumber), then image rows, then columns.

``affine`` maps an array index ``(k, j, i, 1)`` (slice, row, column) to LPS millimetres;
``affine[:, [2, 1, 0, 3]]`` is the ITK/nibabel-style ``(i, j, k)`` order (still LPS; negate the
first two rows for RAS). ``spacing`` is ``(z, y, x)`` in mm and ``direction``'s columns are the
unit LPS vectors of the ``z``, ``y`` and ``x`` axes. With a tilted gantry the ``z`` axis follows
the actual slice-to-slice step, so it is not perpendicular to the image plane.

Which geometry to trust: ``positions`` holds every slice's exact ImagePositionPatient and is the
truth. The affine is one uniform grid: its slice axis (``origin`` and the ``z`` column times
``spacing[0]``) is the least-squares line through the positions, so it is exact for a regular
stack and, for irregular spacing (finding ``irregular_spacing`` or ``missing_slices``), the best
uniform approximation: slice ``k`` lies ``|affine @ (k, 0, 0, 1) - positions[k]|`` away from it
(up to tens of mm on a CT with a change of spacing). Resample with ``positions`` (or split the
stack at the changes of spacing, as ``lake export nifti`` does) before treating such a volume as a
grid. A single slice's spacing is its SliceThickness (1.0 mm only when it has none).

4-D series (several stacks at the same positions, e.g. the time points of an fMRI run) read with
:func:`plan_timepoints` and :func:`volume_4d`: the array is ``(t, z, y, x)``, the affine is the
first time point's (every time point has the same geometry, checked) and ``temporal_spacing`` is
the RepetitionTime in seconds (BIDS and NIfTI's convention). Siemens mosaics are split into their
slices before planning (:mod:`lake.pixels.mosaic`).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from lake.errors import GeometryError, GeometryWarning


class GeometryIssue(StrEnum):
    IRREGULAR_SPACING = "irregular_spacing"
    MISSING_SLICES = "missing_slices"
    GANTRY_TILT = "gantry_tilt"
    MIXED_ORIENTATIONS = "mixed_orientations"
    MULTIPLE_STACKS = "multiple_stacks"


@dataclass(frozen=True)
class Finding:
    issue: GeometryIssue
    detail: str

    def __str__(self) -> str:
        return f"{self.issue.value}: {self.detail}"


@dataclass(frozen=True)
class FrameRef:
    """One frame of a series: where its values are and its own geometry and value transform."""

    array: str
    index: int  # frame index inside the array
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None  # six direction cosines: row direction then column direction
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing) in mm
    slope: float = 1.0
    intercept: float = 0.0
    window: tuple[float, float] | None = None  # (center, width)
    order: tuple[int, int] = (0, 0)  # (InstanceNumber, frame): only to tell stacks apart, never slice order
    thickness: float | None = None  # SliceThickness, mm: the spacing of a single-slice volume
    repetition_time: float | None = None  # RepetitionTime, ms: the temporal spacing of a 4-D series
    tile: int | None = None  # the slice's tile in a Siemens mosaic frame (lake.pixels.mosaic); None otherwise
    tile_shape: tuple[int, int] | None = None  # (rows, columns) of a mosaic tile


@dataclass
class Layout:
    """The slice order of one stack and what was found about its geometry."""

    frames: list[FrameRef]
    positions: np.ndarray  # (n, 3) LPS mm, in slice order
    row_dir: np.ndarray
    col_dir: np.ndarray
    step: np.ndarray  # mean slice-to-slice vector (mm)
    findings: list[Finding] = field(default_factory=list)
    stacks: int = 1  # how many stacks the series holds (the layout is one of them)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _orientation_key(o: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(x, 3) for x in o)


def plan(frames: Sequence[FrameRef], stack: int | None = None, tolerance_mm: float = 0.01) -> Layout:
    """Sort ``frames`` along the slice normal and check the geometry.

    Raises :class:`GeometryError` when frames lack positions, or when the series holds several
    orientations or stacks and ``stack`` does not choose one (stacks are numbered by orientation
    group, then by repeat of a slice location in acquisition order).
    """
    if not frames:
        raise GeometryError("the series has no stored frames")
    if any(f.position is None or f.orientation is None for f in frames):
        raise GeometryError(
            "some frames have no ImagePositionPatient/ImageOrientationPatient; read them with series_array()"
        )
    groups, stacks = split_stacks(frames, tolerance_mm)
    findings: list[Finding] = []
    if len(groups) > 1:
        findings.append(Finding(GeometryIssue.MIXED_ORIENTATIONS, f"{len(groups)} orientations"))
    if len(stacks) > len(groups):
        findings.append(Finding(GeometryIssue.MULTIPLE_STACKS, f"{len(stacks)} stacks (repeated slice locations)"))
    if len(stacks) > 1:
        if stack is None:
            sizes = ", ".join(str(len(s)) for s in stacks)
            raise GeometryError(
                f"the series is not one stack ({'; '.join(map(str, findings))}; frames per stack: {sizes}); "
                f"choose one with stack=0..{len(stacks) - 1}"
            )
        if not 0 <= stack < len(stacks):
            raise GeometryError(f"stack={stack} is out of range: the series has stacks 0..{len(stacks) - 1}")
    chosen = stacks[stack or 0]
    layout = _layout(chosen, tolerance_mm)
    layout.findings = findings + layout.findings
    layout.stacks = len(stacks)
    return layout


def split_stacks(
    frames: Sequence[FrameRef], tolerance_mm: float = 0.01
) -> tuple[list[list[FrameRef]], list[list[FrameRef]]]:
    """(orientation groups, stacks) of frames that all have positions and orientations; each
    stack in slice order."""
    groups: dict[tuple[float, ...], list[FrameRef]] = {}
    for f in frames:
        groups.setdefault(_orientation_key(f.orientation or ()), []).append(f)
    stacks: list[list[FrameRef]] = []
    for group in groups.values():
        stacks.extend(_split_repeats(group, tolerance_mm))
    return list(groups.values()), [_layout(s, tolerance_mm).frames for s in stacks]


def _normal(f: FrameRef) -> np.ndarray:
    o = np.asarray(f.orientation, dtype=float)
    return _unit(np.cross(o[:3], o[3:]))


def _split_repeats(group: list[FrameRef], tol: float) -> list[list[FrameRef]]:
    """Split frames sharing one orientation into stacks: the k-th frame at a location goes to stack k."""
    normal = _normal(group[0])
    seen: Counter[int] = Counter()
    stacks: list[list[FrameRef]] = []
    for f in sorted(group, key=lambda f: f.order):
        # Bins of 5 tolerances: repeated locations in real series are exact copies of one value.
        where = round(float(np.dot(np.asarray(f.position), normal)) / max(5 * tol, 1e-6))
        k = seen[where]
        seen[where] += 1
        while len(stacks) <= k:
            stacks.append([])
        stacks[k].append(f)
    return stacks


def _layout(frames: list[FrameRef], tol: float) -> Layout:
    o = np.asarray(frames[0].orientation, dtype=float)
    row_dir, col_dir = _unit(o[:3]), _unit(o[3:])
    normal = _unit(np.cross(row_dir, col_dir))
    ordered = sorted(frames, key=lambda f: float(np.dot(np.asarray(f.position), normal)))
    positions = np.asarray([f.position for f in ordered], dtype=float)
    findings: list[Finding] = []
    if len(ordered) < 2:
        thickness = ordered[0].thickness or 1.0
        return Layout(ordered, positions, row_dir, col_dir, normal * thickness, findings)
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    step = (positions[-1] - positions[0]) / (len(ordered) - 1)
    angles = np.degrees(np.arccos(np.clip(np.abs(along) / np.linalg.norm(steps, axis=1), 0.0, 1.0)))
    if float(angles.max()) > 0.05:
        lo, hi = float(angles.min()), float(angles.max())
        detail = f"{hi:.2f} degrees" if hi - lo < 0.05 else f"{lo:.2f} to {hi:.2f} degrees (variable)"
        findings.append(Finding(GeometryIssue.GANTRY_TILT, f"slices step off the normal by {detail}"))
    gaps = along
    base = float(gaps.min())
    tolerance = max(tol, 0.01 * base)
    if float(gaps.max() - base) > tolerance:
        multiples = gaps / base
        whole = np.abs(multiples - np.round(multiples)) * base <= tolerance
        missing = int(np.sum(np.round(multiples[whole]) - 1))
        if missing and bool(whole.all()):
            findings.append(Finding(GeometryIssue.MISSING_SLICES, f"{missing} missing at spacing {base:.3f} mm"))
        else:
            findings.append(
                Finding(GeometryIssue.IRREGULAR_SPACING, f"slice spacing {base:.3f} to {float(gaps.max()):.3f} mm")
            )
    return Layout(ordered, positions, row_dir, col_dir, step, findings)


@dataclass
class Volume:
    """A stack of slices in patient space (see the module docstring for axes and the affine)."""

    array: np.ndarray  # (z, y, x) stored values
    positions: np.ndarray  # (z, 3) ImagePositionPatient of each slice, LPS mm
    spacing: tuple[float, float, float]  # (z, y, x) mm
    origin: tuple[float, float, float]  # LPS mm of voxel (0, 0, 0)
    direction: np.ndarray  # 3x3; columns: unit LPS vectors of the z, y, x axes
    slopes: np.ndarray  # (z,) modality LUT slope per slice
    intercepts: np.ndarray  # (z,)
    default_window: tuple[float, float] | None
    findings: list[Finding] = field(default_factory=list)
    stacks: int = 1
    temporal_spacing: float | None = None  # seconds between time points of a 4-D volume (RepetitionTime)

    @property
    def timepoints(self) -> int:
        """How many time points the volume holds (1 for a 3-D volume)."""
        return int(self.array.shape[0]) if self.array.ndim == 4 else 1

    @property
    def affine(self) -> np.ndarray:
        """4x4 mapping ``(k, j, i, 1)`` array indices to LPS mm."""
        out = np.eye(4)
        out[:3, :3] = self.direction * np.asarray(self.spacing)
        out[:3, 3] = self.origin
        return out

    @property
    def issues(self) -> list[GeometryIssue]:
        return [f.issue for f in self.findings]

    def hu(self) -> np.ndarray:
        """Modality LUT applied (Hounsfield units for CT), float32, per slice slope and intercept."""
        out = self.array.astype(np.float32)
        if np.any(self.slopes != 1.0):
            out *= self.slopes.astype(np.float32)[..., None, None]
        if np.any(self.intercepts != 0.0):
            out += self.intercepts.astype(np.float32)[..., None, None]
        return out

    def window(self, center: float | None = None, width: float | None = None) -> np.ndarray:
        """Linear VOI window of :meth:`hu` to float32 in [0, 1] (default: the series' first window,
        else the 1st to 99th percentile)."""
        values = self.hu()
        return apply_window(values, *window_or_default(values, center, width, self.default_window))


def window_or_default(
    values: np.ndarray, center: float | None, width: float | None, default: tuple[float, float] | None
) -> tuple[float, float]:
    if center is not None and width is not None:
        return float(center), float(width)
    if default is not None:
        return default
    lo, hi = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    return float(lo + hi) / 2, max(float(hi - lo), 1.0)


def apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 linear window to [0, 1] (float32)."""
    if width < 1:
        raise ValueError(f"window width must be at least 1, not {width}")
    if width == 1:  # a threshold in the standard's formula
        return (values > center - 0.5).astype(np.float32)
    low = center - 0.5 - (width - 1) / 2
    out = (values.astype(np.float32) - np.float32(low)) / np.float32(width - 1)
    return np.clip(out, 0.0, 1.0, out=out)


#: Findings about the series, not about the stack chosen from it: they never make a stack irregular.
SERIES_NOTES = frozenset({GeometryIssue.MULTIPLE_STACKS, GeometryIssue.MIXED_ORIENTATIONS})


def _check(findings: list[Finding], strict: bool) -> None:
    """Raise (``strict``) or warn about the findings that make a stack irregular."""
    irregular = [f for f in findings if f.issue not in SERIES_NOTES]
    if irregular:
        text = "; ".join(map(str, irregular))
        if strict:
            raise GeometryError(f"the series' geometry is not regular: {text}")
        warnings.warn(f"volume built from a series with irregular geometry: {text}", GeometryWarning, stacklevel=4)


def slice_axis(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(origin, step): the least-squares line ``origin + k * step`` through the slice positions
    (exact for a regular stack; the best uniform grid for an irregular one)."""
    n = len(positions)
    k = np.arange(n, dtype=float)
    step = (positions[-1] - positions[0]) / max(n - 1, 1)
    if np.allclose(positions[0] + k[:, None] * step, positions, rtol=0.0, atol=1e-9):
        return np.asarray(positions[0], dtype=float), step  # regular: exactly the first position
    design = np.column_stack([np.ones(n), k])
    (origin, step), *_ = np.linalg.lstsq(design, positions, rcond=None)
    return np.asarray(origin, dtype=float), np.asarray(step, dtype=float)


def volume_from(layout: Layout, array: np.ndarray, strict: bool = False) -> Volume:
    """A :class:`Volume` from a layout and its frames' stored values (already in layout order).

    Geometry findings of the stack raise :class:`GeometryError` when ``strict``, else warn with
    :class:`GeometryWarning`; they stay in ``findings`` either way. ``multiple_stacks`` and
    ``mixed_orientations`` describe the series a stack was chosen from (``stack=N``) and neither
    raise nor warn.
    """
    _check(layout.findings, strict)
    first = layout.frames[0]
    row_spacing, col_spacing = first.pixel_spacing or (1.0, 1.0)
    if len(layout.frames) > 1:
        p0, step = slice_axis(layout.positions)
        z_spacing = float(np.linalg.norm(step))
        z_dir = _unit(step)
    else:
        z_spacing, z_dir = first.thickness or 1.0, _unit(np.cross(layout.row_dir, layout.col_dir))
        p0 = layout.positions[0]
    direction = np.column_stack([z_dir, layout.col_dir, layout.row_dir])  # y follows columns' direction
    windows = [f.window for f in layout.frames if f.window is not None]
    return Volume(
        array=array,
        positions=layout.positions,
        spacing=(z_spacing, float(row_spacing), float(col_spacing)),
        origin=(float(p0[0]), float(p0[1]), float(p0[2])),
        direction=direction,
        slopes=np.asarray([f.slope for f in layout.frames], dtype=float),
        intercepts=np.asarray([f.intercept for f in layout.frames], dtype=float),
        default_window=windows[0] if windows else None,
        findings=list(layout.findings),
        stacks=layout.stacks,
    )


def first_number(value: Any) -> float | None:
    """First number of a DS/IS value or list (WindowCenter can be multi-valued)."""
    if value is None:
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return first_number(value[0]) if len(value) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def plan_timepoints(frames: Sequence[FrameRef], tolerance_mm: float = 0.01) -> list[Layout]:
    """The layouts of a series whose stacks are time points (one orientation, every stack at the
    same slice positions), in acquisition order; raises :class:`GeometryError` otherwise."""
    if not frames:
        raise GeometryError("the series has no stored frames")
    if any(f.position is None or f.orientation is None for f in frames):
        raise GeometryError("some frames have no ImagePositionPatient/ImageOrientationPatient; read series_array()")
    groups, stacks = split_stacks(frames, tolerance_mm)
    if len(groups) > 1:
        raise GeometryError(f"a 4-D read needs one orientation; the series has {len(groups)}: choose stack=N")
    layouts = [_layout(s, tolerance_mm) for s in stacks]
    sizes = {len(lay.frames) for lay in layouts}
    if len(sizes) > 1:
        raise GeometryError(
            f"the series' stacks hold {sorted(sizes)} slices: time points need equal stacks; read one with stack=N"
        )
    for t, lay in enumerate(layouts[1:], start=1):
        off = float(np.abs(lay.positions - layouts[0].positions).max())
        if off > max(5 * tolerance_mm, 1e-3):
            raise GeometryError(
                f"stack {t} lies up to {off:.3f} mm from stack 0: not time points of one volume; read it with stack={t}"
            )
    for lay in layouts:
        lay.stacks = len(layouts)
    return layouts


def volume_4d(layouts: Sequence[Layout], array: np.ndarray, strict: bool = False) -> Volume:
    """A 4-D :class:`Volume` ``(t, z, y, x)`` from :func:`plan_timepoints`'s layouts and their
    frames' stored values (time point after time point, each in layout order)."""
    t, z = len(layouts), len(layouts[0].frames)
    if array.shape[0] != t * z:
        raise GeometryError(f"{array.shape[0]} frames read for {t} time points of {z} slices")
    base = volume_from(layouts[0], array[:z], strict=strict)
    frames = [f for lay in layouts for f in lay.frames]
    tr = next((f.repetition_time for f in frames if f.repetition_time), None)
    base.array = array.reshape(t, z, *array.shape[1:])
    base.slopes = np.asarray([f.slope for f in frames], dtype=float).reshape(t, z)
    base.intercepts = np.asarray([f.intercept for f in frames], dtype=float).reshape(t, z)
    base.temporal_spacing = tr / 1000.0 if tr else None
    base.stacks = t
    return base
