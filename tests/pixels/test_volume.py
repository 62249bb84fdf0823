"""Slice order and geometry checks on synthetic layouts: regular, tilted, irregular, missing, stacks."""

from __future__ import annotations

import numpy as np
import pytest

from lake.errors import GeometryError, GeometryWarning
from lake.pixels.api import slice_order
from lake.pixels.volume import FrameRef, GeometryIssue, apply_window, plan, volume_from

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def refs(zs: list[float], orientation: tuple[float, ...] = AXIAL, shift_y: float = 0.0) -> list[FrameRef]:
    """Frames at slice positions ``zs``; ``shift_y`` mm of y per mm of z gives a tilted gantry.

    InstanceNumbers are deliberately scrambled: slice order must come from the positions.
    """
    numbers = np.random.default_rng(0).permutation(len(zs))
    return [
        FrameRef("s/a", i, (-10.0, -20.0 + shift_y * z, z), orientation, (0.5, 0.7), order=(int(numbers[i]), 0))
        for i, z in enumerate(zs)
    ]


def test_regular_series_sorts_by_position_not_instance_number() -> None:
    frames = refs([10.0, 0.0, 5.0, 15.0])
    layout = plan(frames)
    assert [f.index for f in layout.frames] == [1, 2, 0, 3]
    assert layout.findings == []
    vol = volume_from(layout, np.zeros((4, 3, 2), np.int16))
    assert vol.spacing == pytest.approx((5.0, 0.5, 0.7))
    assert vol.origin == (-10.0, -20.0, 0.0)
    # The affine maps (slice, row, column) indices to LPS: column 1 of slice 3 lies 0.7 mm along x.
    np.testing.assert_allclose(vol.affine @ [3, 0, 1, 1], [-10.0 + 0.7, -20.0, 15.0, 1.0])
    np.testing.assert_allclose(vol.affine @ [0, 2, 0, 1], [-10.0, -20.0 + 1.0, 0.0, 1.0])


def test_gantry_tilt_is_reported_and_the_affine_follows_the_slices() -> None:
    layout = plan(refs([0.0, 2.0, 4.0, 6.0], shift_y=np.tan(np.radians(15))))
    assert [f.issue for f in layout.findings] == [GeometryIssue.GANTRY_TILT]
    assert "15.00 degrees" in layout.findings[0].detail
    with pytest.warns(GeometryWarning, match="gantry_tilt"):
        vol = volume_from(layout, np.zeros((4, 2, 2), np.int16))
    for k in range(4):  # every slice's origin is exactly where the affine puts it
        np.testing.assert_allclose(vol.affine @ [k, 0, 0, 1], [*vol.positions[k], 1.0], atol=1e-9)
    with pytest.raises(GeometryError, match="gantry_tilt"):
        volume_from(layout, np.zeros((4, 2, 2), np.int16), strict=True)


def test_irregular_spacing_is_reported() -> None:
    layout = plan(refs([0.0, 1.0, 3.5, 10.0]))
    assert [f.issue for f in layout.findings] == [GeometryIssue.IRREGULAR_SPACING]
    with pytest.warns(GeometryWarning):
        vol = volume_from(layout, np.zeros((4, 2, 2), np.int16))
    np.testing.assert_allclose(vol.positions[:, 2], [0.0, 1.0, 3.5, 10.0])
    assert vol.issues == [GeometryIssue.IRREGULAR_SPACING]


def test_missing_slice_is_counted() -> None:
    layout = plan(refs([0.0, 2.5, 5.0, 10.0, 12.5, 20.0]))
    assert [(f.issue, f.detail) for f in layout.findings] == [
        (GeometryIssue.MISSING_SLICES, "3 missing at spacing 2.500 mm")
    ]


def test_two_stacks_are_not_stacked_silently() -> None:
    frames = refs([0.0, 5.0, 10.0, 0.0, 5.0, 10.0])
    with pytest.raises(GeometryError, match=r"2 stacks .*stack=0\.\.1"):
        plan(frames)
    first, second = plan(frames, stack=0), plan(frames, stack=1)
    assert first.stacks == 2 and len(first.frames) == len(second.frames) == 3
    assert {f.index for f in first.frames} | {f.index for f in second.frames} == set(range(6))
    assert [f.issue for f in first.findings] == [GeometryIssue.MULTIPLE_STACKS]
    with pytest.raises(GeometryError, match="out of range"):
        plan(frames, stack=2)
    # series_array's order: stack after stack, each along the normal
    ordered = slice_order(frames)
    assert [f.position[2] for f in ordered if f.position] == [0.0, 5.0, 10.0, 0.0, 5.0, 10.0]
    assert {f.index for f in ordered[:3]} == {f.index for f in first.frames}


def test_mixed_orientations_are_reported() -> None:
    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    frames = refs([0.0, 5.0]) + [FrameRef("s/b", i, (float(i), 0.0, 0.0), sagittal, (1.0, 1.0)) for i in range(3)]
    with pytest.raises(GeometryError, match="2 orientations"):
        plan(frames)
    assert len(plan(frames, stack=1).frames) == 3


def test_frames_without_positions_cannot_form_a_volume() -> None:
    with pytest.raises(GeometryError, match="ImagePositionPatient"):
        plan([FrameRef("s/a", 0, None, None, None)])


def test_hu_uses_each_slice_rescale_and_window_maps_to_unit_range() -> None:
    frames = [
        FrameRef("s/a", i, (0.0, 0.0, float(i)), AXIAL, (1.0, 1.0), slope=s, intercept=b, window=(40.0, 400.0))
        for i, (s, b) in enumerate([(1.0, -1024.0), (2.0, -1000.0)])
    ]
    vol = volume_from(plan(frames), np.full((2, 2, 2), 1000, np.int16))
    np.testing.assert_array_equal(vol.hu()[:, 0, 0], [-24.0, 1000.0])
    shown = vol.window()
    assert shown.dtype == np.float32 and shown.min() >= 0 and shown.max() <= 1
    assert shown[0, 0, 0] == pytest.approx((-24 - (40 - 0.5 - 199.5)) / 399)
    assert shown[1, 0, 0] == 1.0
    np.testing.assert_allclose(apply_window(np.array([-200.0, 40.0, 300.0]), 40, 400), [0.0, 0.50125, 1.0], atol=1e-3)
