"""4-D series, Siemens mosaics, single slices and the least-squares slice axis (synthetic and, when
present, the GE EPI and Siemens mosaic series of ../shared/data/dicom/dcm_qa_nih)."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lake
from lake.errors import GeometryError
from lake.ingest import ingest
from lake.pixels.mosaic import MosaicInfo, _inferred_images, read_tiles, tiles
from lake.pixels.volume import FrameRef, GeometryIssue, plan, plan_timepoints, slice_axis, volume_4d, volume_from
from tests.conftest import shared_dicom

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def series(stacks: int, zs: list[float], tr: float = 2000.0, shift: float = 0.0) -> list[FrameRef]:
    """``stacks`` time points of slices at ``zs`` (stack ``t`` shifted by ``t * shift`` mm), one
    instance per slice numbered in acquisition order; array index = t * len(zs) + slice."""
    out = []
    for t in range(stacks):
        for n, z in enumerate(zs):
            index = t * len(zs) + n
            out.append(
                FrameRef(
                    "s/a",
                    index,
                    (-10.0, -20.0, z + t * shift),
                    AXIAL,
                    (0.5, 0.7),
                    slope=1.0 + t,
                    intercept=-5.0,
                    order=(index + 1, 0),
                    repetition_time=tr,
                )
            )
    return out


def test_time_points_form_a_4d_volume_with_the_temporal_spacing() -> None:
    frames = series(3, [10.0, 0.0, 5.0, 15.0], tr=2435.37)
    layouts = plan_timepoints(frames)
    assert len(layouts) == 3 and all(len(lay.frames) == 4 for lay in layouts)
    # every time point in slice order, time points in acquisition order
    assert [[f.index for f in lay.frames] for lay in layouts] == [[1, 2, 0, 3], [5, 6, 4, 7], [9, 10, 8, 11]]
    values = np.arange(12 * 2 * 3, dtype=np.int16).reshape(12, 2, 3)
    order = [f.index for lay in layouts for f in lay.frames]
    vol = volume_4d(layouts, values[order], strict=True)
    assert vol.array.shape == (3, 4, 2, 3) and vol.timepoints == 3
    assert vol.temporal_spacing == pytest.approx(2.43537)
    np.testing.assert_array_equal(vol.array[2, 0], values[9])
    assert vol.spacing == pytest.approx((5.0, 0.5, 0.7)) and vol.findings == []
    np.testing.assert_allclose(vol.affine @ [3, 0, 0, 1], [-10.0, -20.0, 15.0, 1.0])
    hu = vol.hu()  # each time point's own rescale
    np.testing.assert_allclose(hu[1, 0], values[5] * 2.0 - 5.0)
    np.testing.assert_allclose(hu[0, 3], values[3] * 1.0 - 5.0)


def test_stacks_that_are_not_time_points_are_refused_with_the_reason() -> None:
    unequal = series(2, [0.0, 5.0, 10.0])[:-1]
    with pytest.raises(GeometryError, match=r"hold \[2, 3\] slices"):
        plan_timepoints(unequal)
    moved = series(2, [0.0, 5.0, 10.0])
    moved[-1] = FrameRef("s/a", 5, (-10.0, -20.0, 11.0), AXIAL, (0.5, 0.7), order=(6, 0))
    with pytest.raises(GeometryError, match=r"hold \[2, 4\] slices"):
        plan_timepoints(moved)
    # without repeated locations there is one time point: a 3-D volume
    assert len(plan_timepoints(series(2, [0.0, 5.0, 10.0], shift=1.0))) == 1


def test_strict_with_a_chosen_regular_stack_does_not_raise() -> None:
    frames = series(2, [0.0, 5.0, 10.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning: the chosen stack is regular
        vol = volume_from(plan(frames, stack=1), np.zeros((3, 2, 2), np.int16), strict=True)
    assert GeometryIssue.MULTIPLE_STACKS in vol.issues and vol.stacks == 2
    irregular = series(2, [0.0, 5.0, 12.0])
    with pytest.raises(GeometryError, match="irregular_spacing"):
        volume_from(plan(irregular, stack=1), np.zeros((3, 2, 2), np.int16), strict=True)


def test_a_single_slice_is_as_thick_as_its_slice_thickness() -> None:
    ref = FrameRef("s/a", 0, (1.0, 2.0, 3.0), AXIAL, (0.5, 0.5), thickness=4.5)
    vol = volume_from(plan([ref]), np.zeros((1, 2, 2), np.int16))
    assert vol.spacing[0] == 4.5
    np.testing.assert_allclose(vol.affine[:3, 0], [0.0, 0.0, 4.5])
    bare = FrameRef("s/a", 0, (1.0, 2.0, 3.0), AXIAL, (0.5, 0.5))
    assert volume_from(plan([bare]), np.zeros((1, 2, 2), np.int16)).spacing[0] == 1.0


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.floats(0.5, 20.0, allow_nan=False), min_size=1, max_size=12),
    tilt=st.floats(-0.5, 0.5, allow_nan=False),
)
def test_the_affine_slice_axis_is_the_least_squares_fit_of_the_positions(gaps: list[float], tilt: float) -> None:
    zs = np.concatenate([[0.0], np.cumsum(gaps)])
    frames = [FrameRef("s/a", i, (0.0, tilt * z, float(z)), AXIAL, (1.0, 1.0)) for i, z in enumerate(zs)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol = volume_from(plan(frames), np.zeros((len(zs), 2, 2), np.int16))
    k = np.arange(len(zs))
    fitted = np.stack([vol.affine @ [i, 0, 0, 1] for i in k])[:, :3]
    residual = vol.positions - fitted
    # the normal equations of the least-squares line: residuals sum to zero, uncorrelated with k
    np.testing.assert_allclose(residual.sum(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(k @ residual, 0.0, atol=1e-5)
    origin, _step = slice_axis(vol.positions)
    np.testing.assert_allclose(vol.origin, origin, atol=1e-9)
    if np.allclose(gaps, gaps[0]):  # regular: exact at every slice
        np.testing.assert_allclose(residual, 0.0, atol=1e-6)


def _mosaic(images: int, tile: int) -> tuple[np.ndarray, int]:
    g = int(np.ceil(np.sqrt(images)))
    frame = np.zeros((g * tile, g * tile), np.int16)
    for k in range(images):
        r, c = divmod(k, g)
        frame[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = k + 1
    return frame, g


@pytest.mark.parametrize("images", [2, 5, 9, 10])
def test_mosaic_tiles_have_their_own_positions_and_values(images: int) -> None:
    tile = 4
    frame, g = _mosaic(images, tile)
    size = g * tile
    ref = FrameRef("s/m", 0, (-100.0, -90.0, 16.0), AXIAL, (3.0, 2.0), order=(1, 0))
    info = MosaicInfo(images, size, size, 12.0, (0.0, 0.0, -1.0), True)
    refs = tiles([ref], info)
    assert len(refs) == images
    # IPP is the grid's corner: the first tile's corner lies half the unused grid further in
    shift_rows, shift_cols = (size - tile) / 2, (size - tile) / 2
    np.testing.assert_allclose(refs[0].position, (-100.0 + 2.0 * shift_cols, -90.0 + 3.0 * shift_rows, 16.0))
    np.testing.assert_allclose(refs[-1].position[2], 16.0 - 12.0 * (images - 1))  # along SliceNormalVector
    layout = plan(refs)  # slices sorted along cross(row, col): the CSA normal points the other way
    values = read_tiles(lambda rs: np.stack([frame for _ in rs]), layout.frames)
    assert values.shape == (images, tile, tile)
    assert [int(v[0, 0]) for v in values] == list(range(images, 0, -1))
    assert _inferred_images(frame, size, [tile, 0, 0, tile]) == images


def _lake(folders: list[Path]) -> tuple[lake.Lake, Path]:
    root = Path(tempfile.mkdtemp()) / "nih"
    lake.init(root, key_file=root.parent / "k.key", burned_in_policy="keep-flagged")
    ingest(root, folders, key_file=root.parent / "k.key", workers=2)
    return lake.open(root), root.parent


@pytest.fixture(scope="module")
def nih() -> object:
    base = shared_dicom("dcm_qa_nih")
    lk, tmp = _lake([base / "20180918GE" / "mr_0004", base / "20180918Si" / "mr_0003"])
    yield lk
    shutil.rmtree(tmp, ignore_errors=True)


def _uid(lk: lake.Lake, manufacturer: str) -> str:
    return str(
        lk.sql(f"SELECT SeriesInstanceUID FROM instances WHERE Manufacturer ILIKE '{manufacturer}%' LIMIT 1")[0, 0]
    )


def test_ge_epi_reads_as_ten_time_points_of_fifteen_slices(nih: lake.Lake) -> None:
    uid = _uid(nih, "GE")
    with pytest.raises(GeometryError, match=r"stack=0\.\.9"):
        nih.volume(uid)
    vol = nih.volume(uid, timepoints=True, strict=True)
    assert vol.array.shape == (10, 15, 64, 64) and vol.temporal_spacing == pytest.approx(5.0)
    third = nih.volume(uid, stack=3, strict=True)  # a regular stack: no error
    np.testing.assert_array_equal(third.array, vol.array[3])
    np.testing.assert_allclose(third.affine, vol.affine)
    files = sorted((shared_dicom("dcm_qa_nih") / "20180918GE" / "mr_0004").glob("*.dcm"))
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    # time point t holds the (t+1)-th acquisition of each slice location, slices by position
    by_location: dict[float, list[tuple[int, Path]]] = {}
    for f, ds in zip(files, headers, strict=True):
        by_location.setdefault(round(float(ds.ImagePositionPatient[2]), 3), []).append((int(ds.InstanceNumber), f))
    z = sorted(by_location)
    np.testing.assert_allclose(vol.positions[:, 2], z, atol=1e-3)
    for t, k in ((0, 0), (3, 7), (9, 14)):
        source = sorted(by_location[z[k]])[t][1]
        np.testing.assert_array_equal(vol.array[t, k], pydicom.dcmread(source).pixel_array)


def test_siemens_mosaic_is_split_into_slices_with_the_corrected_origin(nih: lake.Lake) -> None:
    uid = _uid(nih, "SIEMENS")
    vol = nih.volume(uid, timepoints=True, strict=True)
    assert vol.array.shape == (2, 5, 72, 72) and vol.temporal_spacing == pytest.approx(2.43537)
    one = nih.volume(uid, stack=0, strict=True)
    assert one.array.shape == (5, 72, 72)
    # IPP (-324, -324, 16) is the 216x216 grid's corner: the first slice starts 72 voxels of 3 mm in
    np.testing.assert_allclose(one.origin, (-108.0, -108.0, 16.0), atol=1e-6)
    np.testing.assert_allclose(one.spacing, (12.0, 3.0, 3.0))
    files = sorted((shared_dicom("dcm_qa_nih") / "20180918Si" / "mr_0003").glob("*.dcm"))
    mosaic = pydicom.dcmread(files[1]).pixel_array
    for k in range(5):
        r, c = divmod(k, 3)
        np.testing.assert_array_equal(vol.array[1, k], mosaic[r * 72 : (r + 1) * 72, c * 72 : (c + 1) * 72])
