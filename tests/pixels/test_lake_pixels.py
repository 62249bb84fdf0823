"""Pixels through a real lake: series arrays, volumes, enhanced multi-frame, colour, thumbnails."""

from __future__ import annotations

import hashlib
import shutil
import warnings
from datetime import date
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut

import lake
from lake.errors import GeometryError, GeometryWarning, NotInLakeError, PixelDataError
from lake.ingest import ingest
from lake.pixels.codecs import GENERIC
from lake.pixels.fixity import verify_fixity
from lake.pixels.volume import GeometryIssue
from lake.testing.synthetic import PatientSpec, make_instance
from tests.conftest import shared_dicom
from tests.conftest import testdata as data_file

TILT_DEG = 12.0
COLOUR = ("SC_rgb.dcm", "SC_ybr_full_uncompressed.dcm", "OBXXXX1A.dcm", "SC_rgb_jpeg_dcmtk.dcm")
ENHANCED = "eCT_Supplemental.dcm"
Z = [0.0, 3.0, 6.0, 9.0, 12.0, 15.0]


def _tilted_series(folder: Path) -> None:
    """Six CT slices on a tilted gantry, InstanceNumbers reversed and files named in random order."""
    spec = PatientSpec("TILT^TESTER", "MRN000123", "19600101", "ACCT")
    uids = [f"1.2.826.0.1.3680043.9.7777.42.{i}" for i in range(10)]
    shear = np.tan(np.radians(TILT_DEG))
    for i, z in enumerate(Z):
        ds = make_instance(spec, uids[0], uids[1], uids[3 + i], uids[2], date(1990, 1, 1), i, rows=16, cols=12)
        ds.ImagePositionPatient = [-8.0, -8.0 + shear * z, z]
        ds.InstanceNumber = len(Z) - i
        pixels = np.full((16, 12), 100 * i, dtype=np.int16)
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"{(i * 7) % 6}.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def lk(tmp_path_factory: pytest.TempPathFactory) -> lake.Lake:
    src = tmp_path_factory.mktemp("src")
    _tilted_series(src)
    for name in (*COLOUR, ENHANCED):
        shutil.copy(data_file(name), src / name)
    root = tmp_path_factory.mktemp("lakes") / "px"
    key = tmp_path_factory.mktemp("keys") / "px.key"
    # Keep flagged pixels as they are: these tests compare stored values with the source files.
    lake.init(root, key_file=key, burned_in_policy="keep-flagged")
    ingest(root, [src], key_file=key, workers=1)
    return lake.open(root)


def _series_of(lk: lake.Lake, where: str) -> str:
    return str(lk.sql(f"SELECT SeriesInstanceUID FROM instances WHERE {where} LIMIT 1")[0, 0])


def _sop_of(lk: lake.Lake, source_name: str) -> str:
    """The instance ingested from a pydicom test file, found by its pixel checksum."""
    ds = pydicom.dcmread(data_file(source_name))
    frames = ds.pixel_array if int(ds.get("NumberOfFrames", 1) or 1) > 1 else ds.pixel_array[np.newaxis]
    digest = hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()
    found = lk.sql("SELECT SOPInstanceUID FROM instances WHERE pixel_sha256 = ?", [digest])
    assert found.height >= 1, f"{source_name} was not stored"  # two YBR test files decode alike
    return str(found[0, 0])


def test_tilted_series_volume_and_series_array(lk: lake.Lake) -> None:
    series = _series_of(lk, "Rows = 16 AND Columns = 12")
    with pytest.warns(GeometryWarning, match="gantry_tilt"):
        vol = lk.volume(series)
    assert vol.array.shape == (6, 16, 12)
    np.testing.assert_array_equal(vol.array[:, 0, 0], [0, 100, 200, 300, 400, 500])  # by position, not number
    assert vol.issues == [GeometryIssue.GANTRY_TILT]
    assert f"{TILT_DEG:.2f} degrees" in vol.findings[0].detail
    np.testing.assert_allclose(vol.positions[:, 2], Z)
    np.testing.assert_allclose(vol.affine @ [5, 0, 0, 1], [*vol.positions[5], 1.0], atol=1e-6)
    np.testing.assert_array_equal(vol.hu()[:, 0, 0], np.array([0, 100, 200, 300, 400, 500]) - 1024.0)
    with pytest.raises(GeometryError):
        lk.volume(series, strict=True)
    lazy = lk.series_array(series)
    assert lazy.shape == (6, 16, 12) and lazy.chunks[0] == (1,) * 6
    np.testing.assert_array_equal(lazy.compute(), vol.array)
    np.testing.assert_array_equal(lazy[4:1:-2, 3:, ::2].compute(), vol.array[4:1:-2, 3:, ::2])
    assert float(lazy.mean().compute()) == pytest.approx(float(vol.array.mean()))
    assert verify_fixity(lk.paths) == []


def test_array_attributes_interpret_the_values(lk: lake.Lake) -> None:
    key = str(lk.sql("SELECT pixel_array FROM instances WHERE Rows = 16 LIMIT 1")[0, 0])
    attrs = lk.pixel_store.attributes(key)
    sizes = attrs["codec_measured_bytes"]  # uniform synthetic slices: the generic codec is smallest
    assert attrs["codec"] == GENERIC.value and sizes[GENERIC.value] == min(sizes.values())
    assert attrs["signed"] is True and attrs["BitsStored"] == 16
    assert attrs["RescaleIntercept"] == -1024.0 and attrs["PixelSpacing"] == [0.5, 0.5]
    assert attrs["StoredPhotometricInterpretation"] == "MONOCHROME2"
    assert attrs["FrameOfReferenceUID"].startswith("2.25.")  # de-identified


def test_enhanced_ct_uses_per_frame_functional_groups(lk: lake.Lake) -> None:
    ds = pydicom.dcmread(data_file(ENHANCED))
    sop = _sop_of(lk, ENHANCED)
    series = _series_of(lk, f"SOPInstanceUID = '{sop}'")
    per_frame = ds.PerFrameFunctionalGroupsSequence
    shared = ds.SharedFunctionalGroupsSequence[0]
    holder = per_frame[0] if "PlaneOrientationSequence" in per_frame[0] else shared
    iop = np.asarray(holder.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])  # (0, 0, -1) here: slices run from head to feet
    positions = [np.asarray(f.PlanePositionSequence[0].ImagePositionPatient, dtype=float) for f in per_frame]
    expected = sorted((float(p @ normal), float(p[2]), n) for n, p in enumerate(positions))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeometryWarning)
        vol = lk.volume(series)
    np.testing.assert_allclose(vol.positions[:, 2], [z for _, z, _ in expected])
    np.testing.assert_array_equal(vol.array, ds.pixel_array[[n for _, _, n in expected]])
    per = per_frame[expected[0][2]]
    transform = (per if "PixelValueTransformationSequence" in per else shared).PixelValueTransformationSequence[0]
    assert vol.intercepts[0] == float(transform.RescaleIntercept)


@pytest.mark.parametrize("name", COLOUR)
def test_colour_to_rgb(lk: lake.Lake, name: str) -> None:
    ds = pydicom.dcmread(data_file(name))
    sop = _sop_of(lk, name)
    stored = lk.pixels(sop, frame=0)
    rgb = lk.pixels(sop, frame=0, rgb=True)
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        np.testing.assert_array_equal(stored, ds.pixel_array)  # stored values stay available
        np.testing.assert_array_equal(rgb, apply_color_lut(ds.pixel_array, ds))
    else:  # pydicom decodes YBR to RGB; a pure red patch proves the channels
        np.testing.assert_array_equal(rgb, ds.pixel_array)
        assert tuple(rgb[5, 5]) in {(255, 0, 0), (254, 0, 0)}
    assert rgb.shape == (*stored.shape[:2], 3)


def test_grey_has_no_rgb(lk: lake.Lake) -> None:
    sop = str(lk.sql("SELECT SOPInstanceUID FROM instances WHERE Rows = 16 LIMIT 1")[0, 0])
    with pytest.raises(PixelDataError, match="not colour"):
        lk.pixels(sop, rgb=True)


def test_thumbnails_are_png_and_montage_is_a_grid(lk: lake.Lake) -> None:
    series = _series_of(lk, "Rows = 16 AND Columns = 12")
    thumb = lk.thumbnail(series)
    assert thumb.startswith(b"\x89PNG\r\n\x1a\n")
    image = imagecodecs.png_decode(thumb)
    assert image.shape == (16, 12) and image.dtype == np.uint8
    colour = imagecodecs.png_decode(lk.thumbnail(_sop_of(lk, "OBXXXX1A.dcm"), max_size=200))
    assert colour.shape == (150, 200, 3)
    grid = lk.montage(series, count=6, columns=3, max_size=8)
    assert grid.shape == (2 * 8 + 2, 3 * 6 + 4)  # 16x12 slices shrink by 2 to 8x6, gaps of 2
    assert grid[:8, :6].mean() < grid[10:, 16:].mean()  # brighter slices later (by position)


def test_shared_ge_ct_geometry() -> None:
    folder = shared_dicom("dcm_qa_ct/GE")
    files = sorted(folder.glob("*.dcm"))
    root = Path(pytest.importorskip("tempfile").mkdtemp()) / "ge"
    try:
        lake.init(root, key_file=root.parent / "k.key", burned_in_policy="keep-flagged")
        ingest(root, [folder], key_file=root.parent / "k.key", workers=2)
        lk = lake.open(root)
        series = str(lk.sql("SELECT SeriesInstanceUID FROM instances LIMIT 1")[0, 0])
        with pytest.warns(GeometryWarning):
            vol = lk.volume(series)
        assert vol.array.shape == (len(files), 512, 512)
        assert {GeometryIssue.GANTRY_TILT, GeometryIssue.IRREGULAR_SPACING} <= set(vol.issues)
        by_z = sorted((float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]), f) for f in files)
        np.testing.assert_allclose(vol.positions[:, 2], [z for z, _ in by_z])
        np.testing.assert_array_equal(vol.array[3], pydicom.dcmread(by_z[3][1]).pixel_array)
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


def test_instance_reads_use_a_per_series_location_cache(lk: lake.Lake) -> None:
    rows = lk.sql("SELECT SOPInstanceUID, pixel_sha256 FROM instances WHERE Rows = 16 AND Columns = 12")
    for sop, digest in rows.iter_rows():
        frames = lk.pixels(sop)
        assert hashlib.sha256(frames.tobytes()).hexdigest() == digest
        np.testing.assert_array_equal(lk.pixels(sop, frame=0), frames[0])
    with pytest.raises(NotInLakeError, match="no instance"):
        lk.pixels("2.25.1234")
    with pytest.raises(NotInLakeError, match=r"frames 0\.\.0"):
        lk.pixels(rows[0, 0], frame=1)
