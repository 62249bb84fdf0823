"""Instances an earlier run stored unread are read again once a later run finds text in their series
(lake.review.reread): masked and stored as a fresh ingest of every file would store them.

OCR is the stand-in of tests/deid/test_ocr_sampling.py (a block of white pixels is "text")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lake
from lake.deid import pixels
from lake.ingest import ingest
from lake.review import reread
from tests.deid.test_ocr_sampling import _derived, _marker_finder

SERIES, COUNT = 7, 24
LATE = ".99"
PIXEL_COLUMNS = (
    "pixel_status", "pixel_reason", "pixel_sha256", "pixel_dtype", "pixel_bytes", "frame_count",
    "pixel_phi_method", "pixel_phi_boxes", "pixel_phi_masked_fraction", "pixel_phi_frames_read",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _stand_in_ocr() -> Any:
    pixels.set_text_finder(_marker_finder)
    yield
    pixels.set_text_finder(pixels._UNSET)


def _rows(root: Path, key_file: Path, sops: set[str] | None = None) -> dict[int, dict[str, Any]]:
    """The rows by instance number (of the instances ``sops`` only: not the late one, also numbered 2)."""
    rows = lake.open(root, key_file=key_file).sql("SELECT * FROM instances").to_dicts()
    return {int(r["InstanceNumber"]): r for r in rows if sops is None or r["SOPInstanceUID"] in sops}


def _write(folder: Path, numbers: range, with_text: set[int]) -> list[Path]:
    folder.mkdir()
    out = []
    for number in numbers:
        path = folder / f"{number:02d}.dcm"
        _derived(SERIES, number, number in with_text).save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def test_a_later_run_with_text_has_earlier_unread_instances_read_and_masked(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "lake.key"
    # which instances OCR leaves out of the sample (a function of the keyed UID): from a clean series
    probe = tmp_path / "probe"
    lake.init(probe, key_file=key_file)
    ingest(probe, _write(tmp_path / "clean", range(1, COUNT + 1), set()), key_file=key_file)
    unread = {n for n, r in _rows(probe, key_file).items() if r["pixel_phi_reason"] == reread.UNREAD}
    assert 8 <= len(unread) <= 20  # about 7 in 8 of those numbered 5-24 (the key is new: the sample too)
    hidden = set(sorted(unread)[::2])  # text where the first run does not read

    first = _write(tmp_path / "first", range(1, COUNT + 1), hidden)
    later = tmp_path / "later"
    later.mkdir()
    late = later / "late.dcm"
    ds = _derived(SERIES, 2, True)  # a new instance of the series, numbered 2 (always read), with text
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + LATE
    ds.save_as(late, enforce_file_format=True)

    root = tmp_path / "lake"
    lake.init(root, key_file=key_file)
    ingest(root, first, key_file=key_file)
    before = _rows(root, key_file)
    assert {n for n, r in before.items() if r["pixel_phi_reason"] == reread.UNREAD} == unread  # stored unread
    summary = ingest(root, [late], key_file=key_file)
    assert summary.ingested == 1
    first_sops = {r["SOPInstanceUID"] for r in before.values()}
    after = _rows(root, key_file, first_sops)
    lk = lake.open(root, key_file=key_file)
    for n in unread:
        row = after[n]
        assert row["pixel_phi_method"] == "ocr" and row["pixel_phi_frames_read"] == 1
        stored = lk.pixels(row["SOPInstanceUID"])
        if n in hidden:
            verdict = (row["pixel_phi_reason"], row["pixel_reason"], row["pixel_status"])
            assert verdict == ("text_found", "masked:ocr", "stored")
            assert row["pixel_phi_boxes"] == 1 and row["pixel_phi_masked_fraction"] > 0
            assert stored.max() < 250 and (stored[0, 40:46, 8:40] == 0).all()
            assert row["pixel_sha256"] != before[n]["pixel_sha256"]
        else:
            assert (row["pixel_phi_reason"], row["pixel_reason"]) == ("no_text_found", None)
            assert row["pixel_sha256"] == before[n]["pixel_sha256"]
    for n in set(after) - unread:  # read by the first run: as they were
        assert after[n] == before[n]

    # as a fresh ingest of every file stores them: the same pixels and pixel columns
    fresh = tmp_path / "fresh"
    lake.init(fresh, key_file=key_file)
    ingest(fresh, [*first, late], key_file=key_file)
    again = _rows(fresh, key_file, first_sops)
    fresh_lake = lake.open(fresh, key_file=key_file)
    for n in unread:
        for column in PIXEL_COLUMNS:
            assert after[n][column] == again[n][column], (n, column)
        sop = after[n]["SOPInstanceUID"]
        assert np.array_equal(lk.pixels(sop), fresh_lake.pixels(sop))
    # the fresh ingest ranks the text by the header's names (the lake no longer has them)
    assert {again[n]["pixel_phi_reason"] for n in hidden} == {"identifier_in_text"}

    runs = lk.sql("SELECT operation, counts FROM runs ORDER BY started_at, run_id").to_dicts()
    assert [r["operation"] for r in runs] == ["ingest", "ingest", "reread"]
    counts = runs[-1]["counts"]
    counts = json.loads(counts) if isinstance(counts, str) else counts
    assert (counts["read"], counts["masked"], counts["series"]) == (len(unread), len(hidden), 1)
    # a third run finds nothing left to read
    assert reread.reread_series_with_text(lk) == {"read": 0, "masked": 0}


class _Crash(Exception):
    pass


def test_a_reread_stopped_after_a_commit_is_recorded_and_finished_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped at ``reread.after_commit`` (the hook raising where a kill would stop the process): the
    committed row stays decided, the next run records the stopped run in ``runs`` from its vault
    note and reads the rest."""
    key_file = tmp_path / "keys" / "lake.key"
    root = tmp_path / "lake"
    lake.init(root, key_file=key_file)
    files = _write(tmp_path / "first", range(1, COUNT + 1), set())
    ingest(root, files, key_file=key_file)
    unread = {n for n, r in _rows(root, key_file).items() if r["pixel_phi_reason"] == reread.UNREAD}
    late = tmp_path / "late.dcm"
    ds = _derived(SERIES, 2, True)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + LATE
    ds.save_as(late, enforce_file_format=True)

    def stop(name: str) -> None:
        if name == "reread.after_commit":
            raise _Crash(name)

    monkeypatch.setattr(reread, "crash_point", stop)
    with pytest.raises(_Crash):
        ingest(root, [late], key_file=key_file)
    rows = _rows(root, key_file)
    assert sum(rows[n]["pixel_phi_reason"] == reread.UNREAD for n in unread) == len(unread) - 1
    assert (Path(str(key_file) + ".vault") / reread.NOTE).is_file()
    monkeypatch.undo()
    pixels.set_text_finder(_marker_finder)

    lk = lake.open(root, key_file=key_file)
    assert reread.reread_series_with_text(lk) == {"read": len(unread) - 1, "masked": 0}
    rows = _rows(root, key_file)
    assert all(rows[n]["pixel_phi_reason"] == "no_text_found" for n in unread)
    # by start: run ids are sortable to the second only (two re-reads in one second sort at random)
    runs = lk.sql("SELECT outcome FROM runs WHERE operation = 'reread' ORDER BY started_at").to_dicts()
    assert [r["outcome"] for r in runs] == ["crashed", "ok"]
    assert not (Path(str(key_file) + ".vault") / reread.NOTE).exists()
