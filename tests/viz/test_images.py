"""side_by_side and montage draw what they say: the matched slices, one window, one axes per slice."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from lake.errors import GeometryError
from lake.pixels.volume import apply_window
from lake.viz import montage, side_by_side
from tests.viz.conftest import make_volume


def _shown(fig: Figure, n: int) -> np.ndarray:
    return np.asarray(fig.axes[n].images[0].get_array())


def test_side_by_side_shows_the_nearest_prior_slice_in_the_current_window() -> None:
    current = make_volume([0.0, 2.5, 5.0, 7.5, 10.0, 12.5], window=(40.0, 400.0))
    # thicker slices, another offset and pixel spacing: the slice at 7.0 is nearest to 7.5
    prior = make_volume([-5.0, 1.0, 7.0, 13.0], corner=(-11.0, -21.0, 0.0), pixel_spacing=(0.8, 0.7), slope=2.0)
    fig = side_by_side(current, prior, (0.0, 0.0, 7.4))
    assert len(fig.axes) == 2
    # slice 3 of the current (100 * 3 + ramp) and slice 2 of the prior, both in window 40/400
    np.testing.assert_allclose(_shown(fig, 0), apply_window(current.array[3].astype(np.float32) - 1024, 40, 400))
    np.testing.assert_allclose(_shown(fig, 1), apply_window(prior.array[2].astype(np.float32) * 2 - 1024, 40, 400))
    assert prior.array[2, 0, 0] == 200  # make_volume: the third slice by position holds 100 * 2
    assert "slice 4 of 6, 0.1 mm" in fig.axes[0].get_title()
    assert "slice 3 of 4, 0.4 mm" in fig.axes[1].get_title()
    assert "window center 40, width 400" in fig.get_suptitle()
    # both images in mm of the current image's plane: the prior's corner 1 mm left and up
    assert fig.axes[0].images[0].get_extent() == pytest.approx([-10.25, -7.75, -17.25, -20.25])
    assert fig.axes[1].images[0].get_extent() == pytest.approx([-11.35, -7.85, -16.6, -21.4])


def test_side_by_side_window_given_applies_to_both() -> None:
    current = make_volume([0.0, 1.0, 2.0], window=(40.0, 400.0))
    prior = make_volume([0.0, 1.0, 2.0], window=(-600.0, 1500.0))
    fig = side_by_side(current, prior, window=(-1000.0, 50.0))
    for n, vol in enumerate((current, prior)):
        np.testing.assert_allclose(_shown(fig, n), apply_window(vol.array[1].astype(np.float32) - 1024, -1000, 50))


def test_side_by_side_refuses_other_orientations() -> None:
    axial = make_volume([0.0, 1.0, 2.0])
    sagittal = make_volume([0.0, 1.0, 2.0], orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    with pytest.raises(GeometryError, match="same orientation"):
        side_by_side(axial, sagittal)


def test_montage_has_one_axes_per_slice_in_order() -> None:
    vol = make_volume([float(z) for z in range(0, 40, 4)])  # 10 slices
    fig = montage(vol, count=4, window=(0.0, 2000.0))
    assert len(fig.axes) == 4
    picks = [0, 3, 6, 9]
    for ax, k in zip(fig.axes, picks, strict=True):
        np.testing.assert_allclose(
            ax.images[0].get_array(), apply_window(vol.array[k].astype(np.float32) - 1024, 0, 2000)
        )
        assert ax.get_title() == f"{k}: {4.0 * k:.1f} mm"
    assert len(montage(vol, count=50).axes) == 10  # never more than the slices there are


def test_montage_of_an_array_uses_its_range() -> None:
    values = np.linspace(0.0, 1.0, 3 * 4 * 4).reshape(3, 4, 4)
    fig = montage(values, count=3)
    assert len(fig.axes) == 3
    image = fig.axes[2].images[0]
    np.testing.assert_array_equal(image.get_array(), values[2])
    assert image.get_clim() == (0.0, 1.0)
    with pytest.raises(GeometryError, match=r"\(z, y, x\)"):
        montage(np.zeros((4, 4)))
