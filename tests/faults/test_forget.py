"""``lake forget``: after it, no file of the lake holds anything of the patient."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import numpy as np
import zarr

import lake
from lake.audit import find_identifiers
from lake.cli import main
from lake.config import vault_dir
from lake.ingest import ingest
from lake.maintenance.verify import verify
from lake.testing.synthetic import PatientSpec, make_cohort, make_instance
from tests.faults.conftest import new_lake

SHARED_SERIES = "1.2.826.0.1.3680043.9.7777.555.1"


def _shared_series_patients(root: Path) -> list[PatientSpec]:
    """Two patients whose instances carry the same series UID (bad data, but it happens): one array."""
    specs = [
        PatientSpec("ROE^RICHARD", "MRN900001", "19610101", "ACC9X"),
        PatientSpec("DOE^JANE", "MRN900002", "19620202", "ACC8X"),
    ]
    root.mkdir(parents=True)
    for p, spec in enumerate(specs):
        for i in range(2):
            uid = f"1.2.826.0.1.3680043.9.7777.555.{10 + p}"
            ds = make_instance(spec, uid + ".1", SHARED_SERIES, f"{uid}.2.{i}", uid + ".3", date(1987, 6, 3), i, seed=p)
            spec.uids += [uid + ".1", f"{uid}.2.{i}", uid + ".3"]
            ds.save_as(root / f"{spec.patient_id}_{i}.dcm", enforce_file_format=True)
    return specs


def _identifiers(lk: lake.Lake, pseudonym: str) -> set[str]:
    """The patient's pseudonym and every pseudonymous UID of their instances."""
    rows = lk.sql(
        "SELECT SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID, FrameOfReferenceUID FROM instances "
        "WHERE PatientID = ?",
        [pseudonym],
    )
    return {pseudonym} | {v for row in rows.rows() for v in row if v}


def _frames(lk: lake.Lake, pseudonym: str) -> dict[str, bytes]:
    sops = lk.sql("SELECT SOPInstanceUID FROM instances WHERE PatientID = ? AND pixel_array IS NOT NULL", [pseudonym])
    return {uid: lk.pixels(uid).tobytes() for uid in sops["SOPInstanceUID"].to_list()}


def _all_stored_frames(root: Path) -> set[str]:
    """SHA-256 of every frame of every pixel array on disk, decompressed."""
    out = set()
    for meta in (root / "pixels").glob("*/*/zarr.json"):
        arr = zarr.open_array(store=str(meta.parent), mode="r")
        data = np.asarray(arr[:])
        out |= {hashlib.sha256(frame.tobytes()).hexdigest() for frame in data}
    return out


def test_forget_leaves_no_trace_in_any_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    specs = make_cohort(src / "cohort", n_patients=3, studies_per_patient=2, n_images=2)
    specs += _shared_series_patients(src / "shared")
    root, key = new_lake(tmp_path, keep_crosswalk=True)
    ingest(root, [src], key_file=key, batch_size=3)
    lk = lake.open(root)
    lk.optimize()  # the header index (and its range map, which names UIDs) must be cleaned too
    assert (root / "tables" / "header_index" / "_lake_ranges.json").is_file()
    crosswalk = {
        json.loads(line)["original_patient_id"]: json.loads(line)["pseudonym"]
        for line in (vault_dir(key) / "crosswalk.jsonl").read_text().splitlines()
    }
    by_name = {s.name: crosswalk[s.patient_id] for s in specs}
    gone_specs = [specs[0], specs[1], specs[3]]  # by pseudonym, by original ID, one sharing an array
    kept_specs = [specs[2], specs[4]]
    gone = [by_name[s.name] for s in gone_specs]
    identifiers = set().union(*(_identifiers(lk, p) for p in gone)) - {
        lk.sql("SELECT DISTINCT SeriesInstanceUID FROM instances WHERE PatientID = ?", [by_name[specs[4].name]])[0, 0]
    }  # the series UID the kept patient shares stays, with the kept patient's rows
    identifiers |= {i for s in gone_specs for i in s.identifiers() if len(i) >= 6}
    gone_frames = {hashlib.sha256(f).hexdigest() for p in gone for f in _frames(lk, p).values()}
    kept_frames = {uid: f for p in (by_name[s.name] for s in kept_specs) for uid, f in _frames(lk, p).items()}
    assert gone_frames and kept_frames
    assert find_identifiers(root, identifiers)  # the scan does find them before

    assert main(["forget", "--lake", str(root), "--key-file", str(key), "--patient", gone[0]]) == 0
    assert main(["forget", "--lake", str(root), "--key-file", str(key), "--original-id", specs[1].patient_id]) == 0
    assert main(["forget", "--lake", str(root), "--key-file", str(key), "--patient", gone[2]]) == 0

    hits = find_identifiers(root, identifiers)
    assert hits == [], hits[:5]
    remaining = _all_stored_frames(root)
    kept_hashes = {hashlib.sha256(f).hexdigest() for f in kept_frames.values()}
    assert not (gone_frames - kept_hashes) & remaining, "a forgotten patient's frame is still in a pixel array"
    lk = lake.open(root)
    assert set(lk.sql("SELECT DISTINCT PatientID FROM instances")["PatientID"].to_list()) == {
        by_name[s.name] for s in kept_specs
    }
    for uid, frame in kept_frames.items():  # the compacted array still serves the other patient
        assert lk.pixels(uid).tobytes() == frame
        assert lk.header(uid)["00080018"]["Value"] == [uid]
    report = verify(root, record=False)
    assert report.ok, [str(p) for p in report.problems]
    counts = [json.loads(c) for c in lk.sql("SELECT counts FROM runs WHERE operation = 'forget'")["counts"]]
    assert sorted(c["arrays_compacted"] for c in counts) == [0, 0, 1]
    assert specs[1].patient_id not in (vault_dir(key) / "crosswalk.jsonl").read_text()


def test_forget_an_unknown_patient_fails_cleanly(tmp_path: Path, corpus: Path) -> None:
    root, key = new_lake(tmp_path)
    ingest(root, [corpus], key_file=key)
    assert main(["forget", "--lake", str(root), "--key-file", str(key), "--patient", "P-0000000000000000"]) == 2
    outcomes = lake.open(root).sql("SELECT outcome FROM runs WHERE operation = 'forget'")["outcome"].to_list()
    assert outcomes == ["not_found"]
    # the lake still takes new data after its history was purged
    _shared_series_patients(tmp_path / "more")
    assert ingest(root, [tmp_path / "more"], key_file=key).ingested == 4
    assert verify(root, record=False).ok


def test_a_forgotten_patient_is_never_ingested_again(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_cohort(src, n_patients=2, studies_per_patient=1, n_images=2)
    root, key = new_lake(tmp_path)
    ingest(root, [src], key_file=key)
    lk = lake.open(root)
    gone = lk.sql("SELECT min(PatientID) FROM instances")[0, 0]
    assert main(["forget", "--lake", str(root), "--key-file", str(key), "--patient", gone]) == 0
    again = ingest(root, [src], key_file=key)  # the same export arrives again
    assert again.seen == 4 and again.ingested == 0 and again.duplicates == 2 and again.rejected == 2
    assert again.reject_reasons == {"patient_withdrawn": 2}
    assert lake.open(root).sql("SELECT count(*) FROM instances WHERE PatientID = ?", [gone])[0, 0] == 0
    assert find_identifiers(root, [gone]) == []  # the withdrawal list is in the vault, not the lake
    assert gone in (vault_dir(key) / "withdrawn.jsonl").read_text()
