"""A point both volumes cover, for a study beside its prior when their extents differ."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lake.errors import GeometryError
from lake.viz import nearest_slice, shared_point, slice_plane_distances
from lake.viz.position import slice_center
from tests.viz.conftest import make_volume


@settings(max_examples=40, deadline=None)
@given(
    spacing=st.sampled_from([1.0, 2.5, 5.0]),
    current_first=st.integers(-10, 10),
    prior_first=st.integers(-10, 10),
    current_slices=st.integers(1, 12),
    prior_slices=st.integers(1, 12),
)
def test_on_a_shared_grid_both_volumes_have_a_slice_through_the_point(
    spacing: float, current_first: int, prior_first: int, current_slices: int, prior_slices: int
) -> None:
    """Slices at multiples of one spacing, different first slices and extents (as one scanner's
    series of a patient): the point lies on a plane of both, in the middle of the overlap."""
    current_grid = list(range(current_first, current_first + current_slices))
    prior_grid = list(range(prior_first, prior_first + prior_slices))
    common = sorted(set(current_grid) & set(prior_grid))
    current = make_volume([k * spacing for k in current_grid])
    prior = make_volume([k * spacing for k in prior_grid], corner=(-30.0, 5.0, 0.0), pixel_spacing=(0.7, 0.7))
    if not common:
        with pytest.raises(GeometryError, match="share no position"):
            shared_point(current, prior)
        return
    point = shared_point(current, prior)
    k_current, k_prior = nearest_slice(current, point), nearest_slice(prior, point)
    assert abs(slice_plane_distances(current, point)[k_current]) < 1e-9
    assert abs(slice_plane_distances(prior, point)[k_prior]) < 1e-9
    at = current_grid[k_current]
    assert at in common and abs((at - common[0]) - (common[-1] - at)) <= 1  # the middle of the overlap
    np.testing.assert_allclose(point, slice_center(current, k_current))  # in the current's image centre
