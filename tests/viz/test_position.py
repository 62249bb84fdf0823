"""The slice at a point in patient coordinates: nearest by plane distance, on generated volume pairs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lake.errors import GeometryError
from lake.viz import nearest_slice, slice_plane_distances
from lake.viz.images import matched_slices
from lake.viz.position import slice_center
from tests.viz.conftest import make_volume

OBLIQUE = (1.0, 0.0, 0.0, 0.0, float(np.cos(np.radians(30))), float(-np.sin(np.radians(30))))


def test_distances_are_along_the_normal_in_slice_order() -> None:
    vol = make_volume([10.0, 0.0, 5.0], corner=(3.0, 4.0, 7.0))
    np.testing.assert_allclose(slice_plane_distances(vol, (100.0, -50.0, 13.0)), [6.0, 1.0, -4.0])
    assert nearest_slice(vol, (0.0, 0.0, 13.0)) == 1  # 12 mm, the slice at +5 from the corner
    assert nearest_slice(vol, (0.0, 0.0, -100.0)) == 0  # beyond the first slice: the first one


def test_a_point_needs_three_coordinates() -> None:
    with pytest.raises(GeometryError, match="3 values"):
        nearest_slice(make_volume([0.0, 1.0]), (1.0, 2.0))


@settings(max_examples=60, deadline=None)
@given(
    current_spacing=st.floats(0.5, 5.0),
    prior_spacing=st.floats(0.5, 8.0),
    current_offset=st.floats(-40.0, 40.0),
    prior_offset=st.floats(-40.0, 40.0),
    current_slices=st.integers(2, 30),
    prior_slices=st.integers(2, 30),
    oblique=st.booleans(),
    fraction=st.floats(-0.2, 1.2),
)
def test_prior_slice_is_the_geometrically_nearest(
    current_spacing: float,
    prior_spacing: float,
    current_offset: float,
    prior_offset: float,
    current_slices: int,
    prior_slices: int,
    oblique: bool,
    fraction: float,
) -> None:
    """Different spacing, offsets and counts: the chosen prior slice is the one whose plane is
    nearest to the point, found here by brute force from the construction."""
    orientation = OBLIQUE if oblique else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    current_along = [current_offset + k * current_spacing for k in range(current_slices)]
    prior_along = [prior_offset + k * prior_spacing for k in range(prior_slices)]
    o = np.asarray(orientation)
    current = make_volume(current_along, orientation=orientation)
    shifted = tuple(np.asarray((-10.0, -20.0, 0.0)) - 2.0 * o[:3] - 5.0 * o[3:])  # another corner, same planes
    prior = make_volume(prior_along, orientation=orientation, corner=shifted, pixel_spacing=(0.8, 0.8))  # type: ignore[arg-type]
    normal = np.cross(o[:3], o[3:])
    target = current_along[0] + fraction * (current_along[-1] - current_along[0])
    point = np.asarray((-10.0, -20.0, 0.0)) + target * normal + 3.0 * o[:3] + 2.0 * o[3:]  # off-centre, in plane
    k_current, k_prior, _ = matched_slices(current, prior, point)
    # the projection of the point on the normal, less each slice's (the corners differ only in plane)
    expected_prior = int(np.argmin([abs(target - a) for a in prior_along]))
    expected_current = int(np.argmin([abs(target - a) for a in current_along]))
    assert abs(abs(target - prior_along[k_prior]) - abs(target - prior_along[expected_prior])) < 1e-6
    assert abs(abs(target - current_along[k_current]) - abs(target - current_along[expected_current])) < 1e-6


def test_default_point_is_the_centre_of_the_current_middle_slice() -> None:
    current = make_volume([0.0, 3.0, 6.0, 9.0, 12.0], shape=(5, 9))
    prior = make_volume([-1.0, 4.0, 9.0, 14.0])
    k_current, k_prior, point = matched_slices(current, prior)
    assert k_current == 2
    assert k_prior == 1  # 4.0 is nearest to 6.0
    # centre of a 5 x 9 image at 0.5 mm from the corner (-10, -20): 4 columns and 2 rows in
    np.testing.assert_allclose(point, [-10.0 + 2.0, -20.0 + 1.0, 6.0])
    np.testing.assert_allclose(slice_center(current, 2), point)


def test_perpendicular_slices_are_refused() -> None:
    axial = make_volume([0.0, 1.0, 2.0])
    coronal = make_volume([0.0, 1.0, 2.0], orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    with pytest.raises(GeometryError, match=r"90\.0 degrees"):
        matched_slices(axial, coronal)
