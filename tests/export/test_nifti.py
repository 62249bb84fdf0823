"""``lake export nifti`` against dcm2niix run on the ORIGINAL files (the pip package's binary):
affines (1e-3 mm) and voxel values after reorientation, scaling, 4-D EPI, mosaics, gantry tilt,
irregular spacing, the sidecar and the CLI round trip, and no identifier of the originals in any
written file. Shared series (../shared/data/dicom) are skipped when absent."""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

import lake
from lake.cli.nifti_cmd import add_nifti_parser
from lake.export.nifti import ExportError, export_nifti, export_selection
from lake.export.slice_timing import GE_NO_POLARITY, GE_NO_PROTOCOL
from lake.ingest import ingest
from tests.conftest import shared_dicom
from tests.conftest import testdata as data_file

nib = pytest.importorskip("nibabel")
dcm2niix = pytest.importorskip("dcm2niix")


def convert(folder: Path, out: Path) -> dict[str, Path]:
    """dcm2niix on the original files of ``folder``: {output name: path}."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [dcm2niix.bin, "-z", "y", "-b", "y", "-f", "%s", "-o", str(out), str(folder)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return {p.name[: -len(".nii.gz")]: p for p in out.glob("*.nii.gz")}


def canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.as_closest_canonical(nib.load(str(path)))
    return image.affine, np.asanyarray(image.get_fdata())


def assert_same_image(ours: Path, theirs: Path) -> None:
    a, da = canonical(ours)
    b, db = canonical(theirs)
    np.testing.assert_allclose(a, b, atol=1e-3)
    assert da.shape == db.shape
    np.testing.assert_array_equal(da, db)  # scaled values, exactly
    ha, hb = nib.load(str(ours)).header, nib.load(str(theirs)).header
    assert (int(ha["sform_code"]), int(ha["qform_code"])) == (int(hb["sform_code"]), int(hb["qform_code"])) == (1, 1)
    assert ha.get_xyzt_units() == hb.get_xyzt_units()
    if len(da.shape) == 4:
        assert float(ha["pixdim"][4]) == pytest.approx(float(hb["pixdim"][4]), abs=1e-4)


def _series_folder(src: Path, number: int, count: int, dst: Path) -> Path:
    """A copy of the files of the series numbered ``number`` with ``count`` instances."""
    groups: dict[str, list[Path]] = {}
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
        if int(ds.get("SeriesNumber") or -1) == number:
            groups.setdefault(str(ds.SeriesInstanceUID), []).append(f)
    chosen = next(files for files in groups.values() if len(files) == count)
    dst.mkdir(parents=True)
    for f in chosen:
        shutil.copy(f, dst / f.name)
    return dst


class Sources:
    def __init__(self, tmp: Path) -> None:
        nih, ct = shared_dicom("dcm_qa_nih"), shared_dicom("dcm_qa_ct")
        self.epi = nih / "20180918GE" / "mr_0004"
        self.mosaic = nih / "20180918Si" / "mr_0003"
        self.tilted = _series_folder(ct / "Philips", 201, 54, tmp / "philips-201")
        self.irregular = ct / "GE"
        self.small = tmp / "pydicom"
        self.small.mkdir()
        for name in ("CT_small.dcm", "MR_small.dcm"):
            (self.small / name.split(".")[0]).mkdir()
            shutil.copy(data_file(name), self.small / name.split(".")[0] / name)

    def folders(self) -> list[Path]:
        return [self.epi, self.mosaic, self.tilted, self.irregular, self.small]


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[lake.Lake, Sources, Path]]:
    tmp = Path(tempfile.mkdtemp())
    try:
        sources = Sources(tmp)
        root = tmp / "lake"
        lake.init(root, key_file=tmp / "k.key", burned_in_policy="keep-flagged")
        ingest(root, sources.folders(), key_file=tmp / "k.key", workers=2)
        yield lake.open(root, key_file=tmp / "k.key"), sources, tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _uid(lk: lake.Lake, where: str) -> str:
    return str(lk.sql(f"SELECT DISTINCT SeriesInstanceUID FROM instances WHERE {where}")[0, 0])


def _one(lk: lake.Lake, where: str, out: Path, **options: Any) -> list[Path]:
    result = export_nifti(lk, [_uid(lk, where)], out, **options)
    return sorted(w.nifti for w in result.written)


def test_ge_epi_is_4d_and_matches_dcm2niix(world: tuple[lake.Lake, Sources, Path]) -> None:
    lk, src, tmp = world
    (ours,) = _one(lk, "Manufacturer ILIKE 'GE%' AND Modality = 'MR'", tmp / "out-epi")
    theirs = convert(src.epi, tmp / "d2n-epi")
    assert nib.load(str(ours)).shape == (64, 64, 15, 10)
    assert_same_image(ours, next(iter(theirs.values())))
    side = json.loads(ours.with_name(ours.name.replace(".nii.gz", ".json")).read_text())
    ref = json.loads(next(iter(theirs.values())).with_suffix("").with_suffix(".json").read_text())
    for key in ("RepetitionTime", "EchoTime", "FlipAngle", "SliceThickness", "MagneticFieldStrength", "SeriesNumber"):
        assert side[key] == pytest.approx(ref[key]), key
    assert side["PhaseEncodingAxis"] == ref.get("PhaseEncodingAxis", ref.get("PhaseEncodingDirection", "?"))[0]


def test_siemens_mosaic_matches_dcm2niix(world: tuple[lake.Lake, Sources, Path]) -> None:
    lk, src, tmp = world
    (ours,) = _one(lk, "Manufacturer ILIKE 'SIEMENS%'", tmp / "out-mosaic")
    theirs = convert(src.mosaic, tmp / "d2n-mosaic")
    assert nib.load(str(ours)).shape == (72, 72, 5, 2)
    assert_same_image(ours, next(iter(theirs.values())))
    # the same voxel order as dcm2niix too, not only after reorientation
    np.testing.assert_array_equal(
        np.asanyarray(nib.load(str(ours)).dataobj), np.asanyarray(nib.load(str(next(iter(theirs.values())))).dataobj)
    )
    side = json.loads(ours.with_name(ours.name.replace(".nii.gz", ".json")).read_text())
    assert side["RepetitionTime"] == pytest.approx(2.43537) and side["EchoTime"] == pytest.approx(0.05)
    assert side["FlipAngle"] == 75 and side["SpacingBetweenSlices"] == 12


@pytest.mark.parametrize("name", ["CT_small", "MR_small"])
def test_pydicom_single_slices_match_dcm2niix_with_scaling(world: tuple[lake.Lake, Sources, Path], name: str) -> None:
    lk, src, tmp = world
    sop = pydicom.dcmread(data_file(f"{name}.dcm"), stop_before_pixels=True)
    (ours,) = _one(
        lk,
        f"Modality = '{sop.Modality}' AND Rows = {sop.Rows} AND frame_count = 1 AND Manufacturer "
        f"= '{sop.Manufacturer}'",
        tmp / f"out-{name}",
    )
    theirs = next(iter(convert(src.small / name, tmp / f"d2n-{name}").values()))
    assert_same_image(ours, theirs)
    mine, reference = nib.load(str(ours)), nib.load(str(theirs))
    # scl_slope/scl_inter from the rescale, over the stored values (nibabel moves them to dataobj)
    assert (mine.dataobj.slope, mine.dataobj.inter) == (reference.dataobj.slope, reference.dataobj.inter)
    np.testing.assert_array_equal(
        np.asanyarray(mine.dataobj.get_unscaled()), np.asanyarray(reference.dataobj.get_unscaled())
    )
    assert mine.header.get_zooms()[2] == pytest.approx(float(sop.SliceThickness))  # a single slice: its thickness
    if name == "CT_small":
        assert (mine.dataobj.slope, mine.dataobj.inter) == (1.0, -1024.0)


def test_tilted_series_is_written_as_acquired_or_corrected(world: tuple[lake.Lake, Sources, Path]) -> None:
    lk, src, tmp = world
    where = "Manufacturer = 'Philips' AND SeriesNumber = 201"
    (acquired,) = _one(lk, where, tmp / "out-tilt")
    theirs = convert(src.tilted, tmp / "d2n-tilt")
    plain = next(p for n, p in theirs.items() if "Tilt" not in n)
    image = nib.load(str(acquired))
    # as acquired: the voxels dcm2niix writes, and an affine that puts every slice at its IPP
    np.testing.assert_array_equal(canonical(acquired)[1], canonical(plain)[1])
    rows = image.shape[1]
    for f in sorted(src.tilted.glob("*"))[::9]:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
        k = int(
            np.argmin(
                [
                    np.abs((image.affine @ [0, rows - 1, k, 1])[:3] * [-1, -1, 1] - ipp).max()
                    for k in range(image.shape[2])
                ]
            )
        )
        np.testing.assert_allclose((image.affine @ [0, rows - 1, k, 1])[:3] * [-1, -1, 1], ipp, atol=1e-3)
    side = json.loads(acquired.with_name(acquired.name.replace(".nii.gz", ".json")).read_text())
    assert "degrees" in side["GantryTiltGeometry"] and side["GantryDetectorTilt"] != 0
    (corrected,) = _one(lk, where, tmp / "out-tilt-corrected", correct_tilt=True)
    reference = next(p for n, p in theirs.items() if "Tilt" in n)
    a, da = canonical(corrected)
    b, db = canonical(reference)
    np.testing.assert_allclose(a, b, atol=1e-3)  # the same orthogonal grid (dcm2niix's is taller)
    overlap = tuple(slice(0, min(x, y)) for x, y in zip(da.shape, db.shape, strict=True))
    diff = np.abs(da[overlap] - db[overlap])
    assert float(np.median(diff)) <= 1.0 and float(np.mean(diff > 50)) < 0.02
    assert (
        "resampled"
        in json.loads(corrected.with_name(corrected.name.replace(".nii.gz", ".json")).read_text())["LakeGeometryNotes"][
            0
        ]
    )


def test_irregular_spacing_is_split_refused_or_resampled(world: tuple[lake.Lake, Sources, Path]) -> None:
    lk, src, tmp = world
    uid = _uid(lk, "Manufacturer ILIKE 'GE%' AND Modality = 'CT' AND Rows = 512")  # not CT_small (GE too)
    refused = export_nifti(lk, [uid], tmp / "out-refuse", irregular="refuse")
    assert refused.written == [] and "irregular slice spacing" in refused.refused[0].reason
    assert not list((tmp / "out-refuse").rglob("*.nii.gz"))
    ipps = sorted(
        np.asarray(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient, dtype=float).tolist()
        for f in src.irregular.glob("*.dcm")
    )
    parts = export_nifti(lk, [uid], tmp / "out-split").written
    assert len(parts) >= 2 and sum(w.shape[2] for w in parts) == len(ipps)
    seen = []
    for w in parts:  # every part's affine puts each of its slices exactly at a source position
        image = nib.load(str(w.nifti))
        rows = image.shape[1]
        for k in range(image.shape[2]):
            p = (image.affine @ [0, rows - 1, k, 1])[:3] * [-1, -1, 1]
            nearest = min(ipps, key=lambda q: float(np.abs(np.asarray(q) - p).max()))
            np.testing.assert_allclose(p, nearest, atol=1e-3)
            seen.append(tuple(nearest))
    assert len(set(seen)) == len(ipps)
    (resampled,) = export_nifti(lk, [uid], tmp / "out-resample", irregular="resample").written
    image = nib.load(str(resampled.nifti))
    gaps = np.diff(sorted(np.asarray(ipps)[:, 2]))
    assert image.header.get_zooms()[2] == pytest.approx(float(np.linalg.norm(image.affine[:3, 2])))
    assert image.shape[2] > len(ipps)  # the smallest spacing over the whole extent
    # the smallest step along the slice normal (the z gaps of a tilted stack are longer)
    assert 0.9 * float(gaps.min()) <= float(np.linalg.norm(image.affine[:3, 2])) <= float(gaps.min())


def _cli(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="lake")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export")
    add_nifti_parser(export.add_subparsers(dest="kind", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = args.func(args)
    return code, out.getvalue()


def _identifiers(folders: list[Path]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for folder in folders:
        for f in sorted(p for p in folder.rglob("*") if p.is_file())[:20]:
            ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
            for key in (
                "PatientName",
                "PatientID",
                "StudyInstanceUID",
                "SeriesInstanceUID",
                "SOPInstanceUID",
                "AccessionNumber",
                "StudyDate",
                "InstitutionName",
                "ReferringPhysicianName",
            ):
                value = str(ds.get(key) or "").strip()
                # (MR_small names its maker, TOSHIBA, as its institution: the Manufacturer is research data)
                if len(value) >= 4 and value.upper() not in str(ds.get("Manufacturer") or "").upper():
                    found.add((key, value))
    return found


def test_cli_round_trip_with_a_cohort_writes_participants_and_no_identifier(
    world: tuple[lake.Lake, Sources, Path],
) -> None:
    from lake.cohorts.manifest import save_query

    lk, src, tmp = world
    manifest = tmp / "mr.cohort.json"
    with lk.snapshot() as snapshot:
        save_query(snapshot, "SELECT DISTINCT PatientID FROM instances WHERE Modality = 'MR'", manifest)
    out = tmp / "out-cli"
    code, printed = _cli(
        [
            "export",
            "nifti",
            "--lake",
            str(lk.root),
            "--cohort",
            str(manifest),
            "--out",
            str(out),
            "--key-file",
            str(tmp / "k.key"),
        ]
    )
    assert code == 0 and "volumes written" in printed
    written = sorted(out.rglob("*.nii.gz"))
    assert len(written) >= 3 and all(p.with_name(p.name[:-7] + ".json").exists() for p in written)
    assert {p.name for p in written} <= set(printed.split()) | {Path(w).name for w in printed.split()}
    table = (out / "participants.tsv").read_text().splitlines()
    assert table[0] == "participant_id\tsex\tage\tvolumes" and len(table) >= 2
    pseudonyms = {str(p) for p in lk.sql("SELECT DISTINCT PatientID FROM instances WHERE Modality = 'MR'")["PatientID"]}
    assert {line.split("\t")[0] for line in table[1:]} == {f"sub-{p.replace('-', '')}" for p in pseudonyms}
    # nothing of the originals' identifiers in any written byte (gzip undone) or on the console
    seeded = _identifiers([src.epi, src.mosaic, src.small])
    blobs = [printed.encode()] + [
        (nib.load(str(p)).header.binaryblock if p.name.endswith(".nii.gz") else p.read_bytes())
        for p in out.rglob("*")
        if p.is_file()
    ]
    leaked = sorted(key for key, value in seeded if any(value.encode() in blob for blob in blobs))
    assert leaked == [], f"original {leaked} exported"
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        _cli(["export", "nifti", "--lake", str(lk.root), "--out", str(out)])  # no selection


def test_selection_errors_name_the_fix(world: tuple[lake.Lake, Sources, Path]) -> None:
    lk, _src, tmp = world
    with pytest.raises(ExportError, match="no SeriesInstanceUID column"):
        export_selection(lk, tmp / "x", sql="SELECT DISTINCT PatientID FROM instances")
    with pytest.raises(ExportError, match="exactly one of --sql and --cohort"):
        export_selection(lk, tmp / "x")
    with pytest.raises(ExportError, match="inside the lake"):
        export_nifti(lk, [], lk.root / "nifti")


def test_slice_timing_and_phase_direction_come_from_the_lakes_csa_header_and_match_dcm2niix(
    world: tuple[lake.Lake, Sources, Path],
) -> None:
    """The de-identified CSA image header is a bulk value of the lake (header_json holds its
    bulk:<sha256>); the sidecar reads it through the lake, never from the original file."""
    lk, src, tmp = world
    uid = _uid(lk, "Manufacturer ILIKE 'SIEMENS%'")
    sops = lk.sql("SELECT SOPInstanceUID FROM instances WHERE SeriesInstanceUID = ?", [uid])["SOPInstanceUID"]
    kept = lk.sql(
        "SELECT count(*) FROM bulk WHERE tag_path = '00291010' AND list_contains(?, SOPInstanceUID)", [sops.to_list()]
    )[0, 0]
    assert kept == len(sops) and lk.header(sops[0])["00291010"]["BulkDataURI"].startswith("bulk:")
    original = pydicom.dcmread(sorted(src.mosaic.glob("*.dcm"))[0])[0x0029, 0x1010].value
    assert base64.b64decode(lk.header(sops[0], bulk=True)["00291010"]["InlineBinary"]) != original  # rewritten
    (ours,) = _one(lk, "Manufacturer ILIKE 'SIEMENS%'", tmp / "out-csa")
    theirs = next(iter(convert(src.mosaic, tmp / "d2n-csa").values()))
    assert_same_image(ours, theirs)
    side = json.loads(ours.with_name(ours.name.replace(".nii.gz", ".json")).read_text())
    ref = json.loads(theirs.with_name(theirs.name.replace(".nii.gz", ".json")).read_text())
    assert side["PhaseEncodingDirection"] == ref["PhaseEncodingDirection"] == "j-"
    np.testing.assert_allclose(side["SliceTiming"], ref["SliceTiming"], atol=1e-4)
    assert "LakeSidecarNotes" not in side


def test_ge_epi_in_a_research_lake_has_dcm2niixs_slice_timing(world: tuple[lake.Lake, Sources, Path]) -> None:
    """The research profile keeps the Protocol Data Block re-written (lake.deid.ge_protocol)."""
    lk, src, tmp = world
    (ours,) = _one(lk, "Manufacturer ILIKE 'GE%' AND Modality = 'MR'", tmp / "out-ge-notes")
    theirs = next(iter(convert(src.epi, tmp / "d2n-ge-notes").values()))
    side = json.loads(ours.with_name(ours.name.replace(".nii.gz", ".json")).read_text())
    ref = json.loads(theirs.with_name(theirs.name.replace(".nii.gz", ".json")).read_text())
    np.testing.assert_allclose(side["SliceTiming"], ref["SliceTiming"], atol=1e-4)
    assert "PhaseEncodingDirection" not in side and side["PhaseEncodingAxis"] == "j"
    assert GE_NO_PROTOCOL not in side["LakeSidecarNotes"] and GE_NO_POLARITY in side["LakeSidecarNotes"]


GE_SERIES = ("mr_0004", "mr_0005", "mr_0006", "mr_0007")  # interleaved/sequential, inferior/superior first


@pytest.mark.parametrize("profile", ["research", "pass-through"])
def test_ge_slice_timing_of_the_four_dcm_qa_nih_series_matches_dcm2niix(tmp_path: Path, profile: str) -> None:
    """The four GE EPI series in a research lake (the block re-written: its allow-listed lines only,
    stored inline) and, as already de-identified copies (the marks added), in a pass-through lake
    (the block as is, a bulk value): SliceTiming equals dcm2niix's on the originals for each."""
    ge = shared_dicom("dcm_qa_nih") / "20180918GE"
    src = tmp_path / "src"
    for name in GE_SERIES:
        (src / name).mkdir(parents=True)
        for f in sorted(ge.joinpath(name).glob("*.dcm")):
            ds = pydicom.dcmread(f)
            if profile == "pass-through":
                ds.PatientIdentityRemoved = "YES"
                ds.DeidentificationMethod = "test copy of a public phantom series"
            ds.save_as(src / name / f.name)
    root, key = tmp_path / "lake", tmp_path / "k.key"
    lake.init(root, key_file=key, profile=profile, burned_in_policy="keep-flagged")
    summary = ingest(root, [src], key_file=key, workers=2)
    assert summary.rejected == 0, summary.reject_reasons
    lk = lake.open(root, key_file=key)
    in_bulk = lk.sql("SELECT count(DISTINCT SOPInstanceUID) FROM bulk WHERE keyword_path LIKE '0025%'")[0, 0]
    assert in_bulk == (600 if profile == "pass-through" else 0)  # the re-written block is small
    for name in GE_SERIES:
        number = int(name[-1])
        (ours,) = _one(lk, f"SeriesNumber = {number}", tmp_path / f"out-{name}")
        theirs = next(iter(convert(ge / name, tmp_path / f"d2n-{name}").values()))
        assert_same_image(ours, theirs)
        side = json.loads(ours.with_name(ours.name.replace(".nii.gz", ".json")).read_text())
        ref = json.loads(theirs.with_name(theirs.name.replace(".nii.gz", ".json")).read_text())
        np.testing.assert_allclose(side["SliceTiming"], ref["SliceTiming"], atol=1e-4, err_msg=name)
        assert GE_NO_POLARITY in side["LakeSidecarNotes"]
