"""``lake review``: the queue, previews, release / mask / reject with their runs rows, bit-exact
release against a fresh ingest, held copies only in the vault, forget, and crashes at named points.

Quarantine without OCR: instances saying Recognizable Visual Features YES (and BurnedInAnnotation
YES) cannot be cleared by reading their pixels, so the default policy quarantines them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

import lake
from lake.cli import main
from lake.errors import ConfigError, NotInLakeError, NotUnderReviewError
from lake.ingest import ingest
from lake.maintenance.forget import forget
from lake.maintenance.verify import verify
from lake.review import list_queue, mask, preview, reject, release
from lake.review.held import quarantine_dir, read_held
from lake.testing.synthetic import make_cohort

PIXEL_COLUMNS = ("frame_count", "pixel_dtype", "pixel_bytes", "pixel_sha256", "pixel_frame_start")


def _quarantine_files(paths: list[Path]) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.BurnedInAnnotation = "YES"
        ds.RecognizableVisualFeatures = "YES"
        ds.save_as(path)


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    """Two patients, one series of 3 images each: patient 0 all quarantined, patient 1 clean."""
    src = tmp_path / "src"
    make_cohort(src, n_patients=2, studies_per_patient=1, n_images=3)
    folders = sorted(p for p in src.iterdir() if p.is_dir())
    quarantined = sorted(folders[0].rglob("*.dcm"))
    _quarantine_files(quarantined)
    keys = tmp_path / "keys"
    keys.mkdir()
    root, key = tmp_path / "lake", keys / "lake.key"
    lake.init(root, key_file=key)
    summary = ingest(root, [src], key_file=key)
    assert summary.pixel_status == {"quarantined": 3, "stored": 3}
    return {"src": src, "root": root, "key": key, "first": quarantined[0], "tmp": tmp_path}


def _row(root: Path, key: Path, uid: str) -> dict:
    return lake.open(root, key).sql("SELECT * FROM instances WHERE SOPInstanceUID = ?", [uid]).to_dicts()[0]


def _queue_uids(c: dict[str, Path]) -> list[str]:
    return [item.sop_uid for item in list_queue(c["root"], c["key"])]


def _runs(c: dict[str, Path], operation: str) -> list[dict]:
    lk = lake.open(c["root"], c["key"])
    return lk.sql("SELECT * FROM runs WHERE operation = ? ORDER BY started_at", [operation]).to_dicts()


def test_list_names_the_quarantined_instances_with_reasons_and_held_copies(corpus: dict[str, Path]) -> None:
    items = list_queue(corpus["root"], corpus["key"])
    assert len(items) == 3
    assert {i.kind for i in items} == {"quarantined"}
    assert all(i.pixel_reason == "recognizable_visual_features:burned_in_annotation_yes" for i in items)
    assert all(i.phi_reason == "recognizable_visual_features" and i.held for i in items)
    # the held copy is the decoded original, in the vault beside the key and nowhere under the lake
    held = read_held(corpus["key"], items[0].sop_uid)
    assert held is not None and held.frames.shape == (1, 32, 32) and held.frames.dtype == np.int16
    assert quarantine_dir(corpus["key"]).is_relative_to(corpus["key"].parent)
    assert not quarantine_dir(corpus["key"]).resolve().is_relative_to(corpus["root"].resolve())


def test_flagged_instances_are_listed_and_released_without_new_pixels(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_cohort(src, n_patients=1, studies_per_patient=1, n_images=2)
    _quarantine_files(sorted(src.rglob("*.dcm"))[:1])
    root, key = tmp_path / "lake", tmp_path / "keys" / "lake.key"
    lake.init(root, key_file=key, burned_in_policy="keep-flagged")
    ingest(root, [src], key_file=key)
    (item,) = list_queue(root, key)
    assert item.kind == "flagged" and item.pixel_reason.startswith("flagged:") and not item.held
    before = _row(root, key, item.sop_uid)
    with pytest.raises(NotUnderReviewError, match="flagged"):
        mask(root, item.sop_uid, [(0, 0, 4, 4)], key_file=key)
    out = release(root, item.sop_uid, key_file=key)
    after = _row(root, key, item.sop_uid)
    assert out.status == "done" and after["pixel_phi_method"] == "review" and after["pixel_phi_reason"] == "released"
    assert {c: after[c] for c in PIXEL_COLUMNS} == {c: before[c] for c in PIXEL_COLUMNS}
    assert list_queue(root, key) == []


def test_release_is_bit_exact_with_a_fresh_ingest_under_keep_flagged(corpus: dict[str, Path]) -> None:
    # the reference: the same file alone, same key, ingested into a lake that keeps flagged pixels
    ref_root = corpus["tmp"] / "reference"
    lake.init(ref_root, key_file=corpus["key"], burned_in_policy="keep-flagged")
    alone = corpus["tmp"] / "alone"
    alone.mkdir()
    (alone / "one.dcm").write_bytes(corpus["first"].read_bytes())
    ingest(ref_root, [alone], key_file=corpus["key"])
    ref = lake.open(ref_root, corpus["key"]).sql("SELECT * FROM instances").to_dicts()[0]
    uid = ref["SOPInstanceUID"]
    assert uid in _queue_uids(corpus)  # same key: the same de-identified UID

    out = release(corpus["root"], uid, key_file=corpus["key"])
    assert out.status == "done" and out.pixel_status == "stored"
    row = _row(corpus["root"], corpus["key"], uid)
    assert {c: row[c] for c in PIXEL_COLUMNS} == {c: ref[c] for c in PIXEL_COLUMNS}
    assert row["header_json"] == ref["header_json"] and row["pixel_array"] == ref["pixel_array"]
    assert (row["pixel_status"], row["pixel_reason"], row["pixel_phi_method"], row["pixel_phi_reason"]) == (
        "stored", "released:review", "review", "released"
    )  # fmt: skip
    mine, theirs = lake.open(corpus["root"], corpus["key"]), lake.open(ref_root, corpus["key"])
    np.testing.assert_array_equal(mine.pixels(uid), theirs.pixels(uid))
    assert mine.pixels(uid).dtype == theirs.pixels(uid).dtype
    ours, refs = mine.pixel_store.attributes(row["pixel_array"]), theirs.pixel_store.attributes(ref["pixel_array"])
    assert ours == refs  # the same codec choice, measurements and interpretation attributes
    assert read_held(corpus["key"], uid) is None  # the held copy goes once the lake stores the pixels
    assert verify(corpus["root"]).ok
    # a second release does nothing; other decisions are refused
    again = release(corpus["root"], uid, key_file=corpus["key"])
    assert again.status == "already"
    with pytest.raises(NotUnderReviewError, match="not under review"):
        reject(corpus["root"], uid, key_file=corpus["key"])
    assert len(_runs(corpus, "review_release")) == 1


def test_mask_zeroes_the_boxes_in_the_held_original_and_stores_the_rest(corpus: dict[str, Path]) -> None:
    uid = _queue_uids(corpus)[1]
    original = read_held(corpus["key"], uid)
    assert original is not None
    with pytest.raises(ConfigError, match="outside"):
        mask(corpus["root"], uid, [(0, 0, 40, 4)], key_file=corpus["key"])
    with pytest.raises(ConfigError, match="x0 < x1"):
        mask(corpus["root"], uid, [(5, 0, 5, 4)], key_file=corpus["key"])
    out = mask(corpus["root"], uid, [(0, 0, 8, 4), (20, 28, 32, 32)], reviewer="Dr Review", key_file=corpus["key"])
    assert out.boxes == 2 and out.pixel_status == "stored"
    stored = lake.open(corpus["root"], corpus["key"]).pixels(uid)
    expected = original.frames.copy()
    expected[:, 0:4, 0:8] = 0
    expected[:, 28:32, 20:32] = 0
    np.testing.assert_array_equal(stored, expected)
    row = _row(corpus["root"], corpus["key"], uid)
    assert row["pixel_phi_boxes"] == 2 and row["pixel_reason"] == "masked:review"
    assert row["pixel_phi_masked_fraction"] == pytest.approx((8 * 4 + 12 * 4) / (32 * 32))
    (run,) = _runs(corpus, "review_mask")
    params = json.loads(run["parameters"])
    assert params["reviewer"] == "Dr Review" and params["boxes"] == [[0, 0, 8, 4], [20, 28, 32, 32]]
    assert uid not in run["parameters"] and uid not in run["counts"]  # a keyed reference, not the UID
    assert run["os_user"] and run["started_at"] <= run["finished_at"]
    assert verify(corpus["root"]).ok


def test_reject_deletes_the_held_copy_and_records_the_decision(corpus: dict[str, Path]) -> None:
    uid = _queue_uids(corpus)[2]
    out = reject(corpus["root"], uid, key_file=corpus["key"])
    assert out.status == "done" and out.pixel_status == "quarantined"
    assert read_held(corpus["key"], uid) is None
    row = _row(corpus["root"], corpus["key"], uid)
    assert (row["pixel_phi_method"], row["pixel_phi_reason"], row["pixel_array"]) == ("review", "rejected", None)
    assert uid not in _queue_uids(corpus)
    assert reject(corpus["root"], uid, key_file=corpus["key"]).status == "already"
    with pytest.raises(NotUnderReviewError):
        release(corpus["root"], uid, key_file=corpus["key"])
    (run,) = _runs(corpus, "review_reject")
    assert json.loads(run["parameters"])["reviewer"] == run["os_user"]  # default: the OS user
    log = (corpus["key"].parent / "lake.key.vault" / "runs" / f"{out.run_id}.jsonl").read_text()
    assert uid in log  # the vault's run log names the instance


def test_refuses_what_is_not_under_review(corpus: dict[str, Path]) -> None:
    lk = lake.open(corpus["root"], corpus["key"])
    stored = lk.sql("SELECT SOPInstanceUID FROM instances WHERE pixel_status = 'stored' LIMIT 1")[0, 0]
    with pytest.raises(NotUnderReviewError, match="not under review"):
        release(corpus["root"], stored, key_file=corpus["key"])
    with pytest.raises(NotUnderReviewError):
        preview(corpus["root"], stored, key_file=corpus["key"])
    with pytest.raises(NotInLakeError):
        reject(corpus["root"], "2.25.1", key_file=corpus["key"])
    assert _runs(corpus, "review_release") == [] and _runs(corpus, "review_reject") == []


def test_no_lake_file_holds_the_quarantined_pixels(corpus: dict[str, Path]) -> None:
    held = [read_held(corpus["key"], uid) for uid in _queue_uids(corpus)]
    originals = [h.frames[0] for h in held if h is not None]
    assert len(originals) == 3
    lk = lake.open(corpus["root"], corpus["key"])
    store = lk.pixel_store
    for key in list(store.keys()):
        arr = store.read(key, 0, int(store.metadata(key)["shape"][0]))
        for frame in arr:
            assert not any(np.array_equal(frame, o) for o in originals)
    raw = [o.tobytes() for o in originals]
    for path in corpus["root"].rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(r[:64] in data for r in raw), path.relative_to(corpus["root"])
    assert not any(p.name.endswith(".npy") for p in corpus["root"].rglob("*"))


def test_forget_deletes_the_patients_held_copies(corpus: dict[str, Path]) -> None:
    uid = _queue_uids(corpus)[0]
    pseudonym = _row(corpus["root"], corpus["key"], uid)["PatientID"]
    summary = forget(corpus["root"], patient=pseudonym, key_file=corpus["key"])
    assert summary.held_deleted == 3
    assert not any(quarantine_dir(corpus["key"]).iterdir())
    assert list_queue(corpus["root"], corpus["key"]) == []


def test_cli_every_command(corpus: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--lake", str(corpus["root"]), "--key-file", str(corpus["key"])]
    assert main(["review", "list", *base]) == 0
    out = capsys.readouterr().out
    assert "3 instances under review" in out and "recognizable_visual_features" in out
    uids = _queue_uids(corpus)
    png = corpus["tmp"] / "previews" / "q.png"
    png.parent.mkdir()
    assert main(["review", "show", uids[0], *base, "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["review", "show", uids[0], *base, "--out", str(png)]) == 2  # exists: --force
    assert main(["review", "show", uids[0], *base, "--out", str(png), "--force"]) == 0
    for inside in (corpus["root"] / "p.png", corpus["key"].parent / "p.png"):
        assert main(["review", "show", uids[0], *base, "--out", str(inside)]) == 2
        assert not inside.exists()
    capsys.readouterr()
    assert main(["review", "mask", uids[0], *base, "--box", "0", "0", "4", "4", "--box", "8", "8", "9", "9"]) == 0
    assert "2 boxes masked" in capsys.readouterr().out
    assert main(["review", "release", uids[1], *base, "--reviewer", "someone"]) == 0
    assert main(["review", "release", uids[1], *base]) == 0
    assert "already released" in capsys.readouterr().out
    assert main(["review", "reject", uids[2], *base]) == 0
    assert main(["review", "mask", uids[2], *base, "--box", "0", "0", "1", "1"]) == 2
    err = capsys.readouterr().err
    assert "lake review: error: instance" in err and "not under review" in err
    assert main(["review", "list", *base]) == 0
    assert "0 instances under review" in capsys.readouterr().out
    assert verify(corpus["root"]).ok


@pytest.mark.parametrize("point", ["review.after_pixels", "review.after_commit", "review.after_runs"])
def test_a_crash_is_completed_by_running_the_same_command_again(corpus: dict[str, Path], point: str) -> None:
    uid = _queue_uids(corpus)[0]
    args = [sys.executable, "-m", "lake", "review", "mask", uid, "--lake", str(corpus["root"]),
            "--key-file", str(corpus["key"]), "--box", "0", "0", "4", "4"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(Path(__file__).parents[1])}
    crashed = subprocess.run(args, env={**env, "LAKE_CRASH_AT": point}, capture_output=True, timeout=120)
    assert crashed.returncode == -9
    problems = {p.kind.value for p in verify(corpus["root"], record=False).problems}
    assert problems <= {"orphan_array", "table_file"}  # what the rerun (or lake vacuum) repairs
    if point == "review.after_pixels":
        assert _row(corpus["root"], corpus["key"], uid)["pixel_status"] == "quarantined"
    again = mask(corpus["root"], uid, [(0, 0, 4, 4)], key_file=corpus["key"])  # the same command, in-process
    assert again.status == ("done" if point == "review.after_pixels" else "completed")
    assert verify(corpus["root"]).ok
    assert read_held(corpus["key"], uid) is None
    assert len(_runs(corpus, "review_mask")) == 1
    stored = lake.open(corpus["root"], corpus["key"]).pixels(uid)
    assert (stored[:, :4, :4] == 0).all()
