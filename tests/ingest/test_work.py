"""Workers that write (issue 17): units of work cut from the whole input, one array per series,
geometry and unit, array names that follow the pixels, a failed unit run again file by file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import lake
from lake.deid.pixels import SERIES_STRIDE
from lake.ingest import ingest, work
from lake.ingest.run import _Entry, _units, work_cost
from lake.ingest.worker import process_file
from lake.maintenance.verify import verify
from lake.pixels.store import frames_array_key
from lake.sources.base import SourceItem
from lake.testing.synthetic import make_cohort


def _entry(n: int, todo: bool = True, readable: bool = True) -> _Entry:
    item = SourceItem(f"file{n}", 10, lambda: b"")
    return _Entry(item, f"ref{n}", 10 if readable else 0, b"x" * 10 if readable else b"", todo)


def test_units_are_cut_from_the_whole_input_so_a_rerun_forms_the_same_ones() -> None:
    first = [_entry(n) for n in range(7)]
    cut = [[e.ref for e in u] for u in _units(iter(first), 3, 10**9)]
    assert cut == [["ref0", "ref1", "ref2"], ["ref3", "ref4", "ref5"], ["ref6"]]
    # a rerun after a crash: files 0-3 are in the lake now, file 1 was rejected before (unreadable here)
    again = [_entry(0, False), _entry(1, False, readable=False), _entry(2, False), _entry(3, False)]
    again += [_entry(n) for n in range(4, 7)]
    units = list(_units(iter(again), 3, 10**9))
    # the unit of files 0-2 has nothing to process: not sent; file 3 goes with 4 and 5, as before
    assert [[e.ref for e in u] for u in units] == [["ref3", "ref4", "ref5"], ["ref6"]]
    assert [e.todo for e in units[0]] == [False, True, True]  # file 3 rebuilds the same arrays only
    # bytes bound a unit too (one file over the bound still makes a unit)
    assert [len(u) for u in _units(iter([_entry(n) for n in range(5)]), 64, 25)] == [2, 2, 1]


def _header(**attrs: object) -> bytes:
    """A small Part 10 file with these attributes (no pixels: the cost is read from the header)."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = "2.25.1"
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_file_ocr_will_read_counts_for_many_in_its_unit() -> None:
    ct = _header(SOPClassUID="1.2.840.10008.5.1.4.1.1.2", Modality="CT", Rows=512, Columns=512)
    us = _header(SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1", Modality="US", Rows=512, Columns=512)
    cine = _header(SOPClassUID="1.2.840.10008.5.1.4.1.1.3.1", Modality="US", Rows=480, Columns=640, NumberOfFrames=120)
    derived = {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4", "Modality": "MR", "Rows": 512, "Columns": 512}
    derived["ImageType"] = ["DERIVED", "SECONDARY"]
    first, later = _header(InstanceNumber=2, **derived), _header(InstanceNumber=40, **derived)
    assert work_cost(ct) == work_cost(b"not DICOM") == 1  # not at risk, or rejected by its worker
    assert work_cost(us) == 1 + work.OCR_FRAME_COST  # one frame of 512 x 512 read
    assert work_cost(cine) == 1 + work.OCR_FRAME_COST * 120 * 480 * 640 / 512**2  # every frame, once one has text
    # a long derived series is read on a sample: its first instances, then about one in SERIES_STRIDE
    assert work_cost(first) == 1 + work.OCR_FRAME_COST
    assert work_cost(later) == 1 + work.OCR_FRAME_COST / SERIES_STRIDE
    # the cut (64 at most): the cine alone between units of CT files; three ultrasound images join the
    # five CT files (5 + 3 x 17 = 56), the other three make the next unit
    costs = [work_cost(d) for d in [ct] * 10 + [cine] + [ct] * 5 + [us] * 6]
    entries = [_Entry(SourceItem(f"f{n}", 10, lambda: b""), f"r{n}", 10, b"x", True, c) for n, c in enumerate(costs)]
    assert [len(u) for u in _units(iter(entries), 64, 10**9)] == [10, 1, 5 + 3, 3]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("cohort")
    make_cohort(src, n_patients=2, studies_per_patient=1, n_images=5)
    return src


def _arrays(root: Path) -> dict[str, int]:
    return {
        p.parent.relative_to(root / "pixels").as_posix(): json.loads(p.read_text())["shape"][0]
        for p in (root / "pixels").glob("*/*/zarr.json")
    }


@pytest.mark.parametrize(("batch_size", "per_series"), [(500, [5]), (2, [1, 2, 2])])
def test_one_array_per_series_geometry_and_unit(
    tmp_path: Path, cohort: Path, batch_size: int, per_series: list[int]
) -> None:
    """Units of ``min(batch_size, 64)`` files: a series' slices share the arrays of their units."""
    root = tmp_path / "lake"
    lake.init(root, key_file=tmp_path / "k", burned_in_policy="keep-flagged")
    ingest(root, [cohort], key_file=tmp_path / "k", batch_size=batch_size)
    lk = lake.open(root)
    rows = lk.sql(
        "SELECT SeriesInstanceUID AS s, pixel_array AS a, pixel_frame_start AS f FROM instances ORDER BY InstanceNumber"
    ).to_dicts()
    arrays = _arrays(root)
    assert set(arrays) == {r["a"] for r in rows}  # no array that no row points to
    for series in {r["s"] for r in rows}:
        mine = [r for r in rows if r["s"] == series]
        keys = list(dict.fromkeys(r["a"] for r in mine))
        assert sorted(arrays[k] for k in keys) == per_series and all(k.startswith(f"{series}/") for k in keys)
        for k in keys:  # offsets in input order within each array
            assert [r["f"] for r in mine if r["a"] == k] == list(range(arrays[k]))
    assert verify(root, record=False).ok
    assert not (root / "pixels" / ".writing").exists()


def test_array_names_follow_the_pixels_and_the_files() -> None:
    frames = np.zeros((2, 4, 4), dtype=np.uint16)
    named = ["a" * 64 + " r1", "b" * 64 + " r2", "{}"]
    key = frames_array_key("1.2.3", frames, named)
    assert key == frames_array_key("1.2.3", frames, list(named))
    assert key.startswith("1.2.3/4x4x1-uint16.")
    masked = ["c" * 64 + " r1", *named[1:]]  # one instance re-processed with a mask: other frames
    other_version = ["a" * 64 + " r3", *named[1:]]  # the same pixels from another file (a correction)
    assert len({key, frames_array_key("1.2.3", frames, masked), frames_array_key("1.2.3", frames, other_version)}) == 3


_KILLER = "LAKE_TEST_KILL_MARKER"


def _dies_on_the_marked_file(data: bytes, *args: object, **kwargs: object) -> object:
    marker = os.environ.get(_KILLER)
    if marker and marker.encode() in data:
        os._exit(3)  # what a segfault in a decoder looks like
    return process_file(data, *args, **kwargs)  # type: ignore[arg-type]


def test_a_unit_whose_worker_died_runs_again_file_by_file(
    tmp_path: Path, cohort: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the file that kills its worker is rejected; the rest of its unit is stored."""
    victim = sorted(cohort.rglob("*.dcm"))[2]
    src = tmp_path / "src"
    src.mkdir()
    for n, f in enumerate(sorted(cohort.rglob("*.dcm"))):
        data = f.read_bytes()
        (src / f"{n:02d}.dcm").write_bytes(data + (b"KILLME" if f == victim else b""))
    monkeypatch.setenv(_KILLER, "KILLME")
    monkeypatch.setattr(work, "process_file", _dies_on_the_marked_file)  # the forked workers inherit it
    root = tmp_path / "lake"
    lake.init(root, key_file=tmp_path / "k", burned_in_policy="keep-flagged")
    summary = ingest(root, [src], key_file=tmp_path / "k", workers=2, file_timeout=120)
    assert (summary.ingested, summary.rejected, dict(summary.reject_reasons)) == (9, 1, {"worker_died": 1})
    assert set(_arrays(root)) == set(lake.open(root).sql("SELECT DISTINCT pixel_array FROM instances")["pixel_array"])
    assert verify(root, record=False).ok
