"""The vault's quarantine area: what ``lake review`` needs of an instance whose pixels the lake
does not store.

``KEY.vault/quarantine/<SOPInstanceUID>/`` (the de-identified UID; the folder sits beside the key,
never in the lake) holds, per quarantined instance:

- ``frames.npy``: the decoded, de-identified instance's original (unmasked) stored values, exactly
  the frames an ingest under ``keep-flagged`` would store (``numpy.save``, no pickle);
- ``held.json``: the pixel array attributes the ingest computed (as :func:`lake.ingest.worker.process`
  passes them to the store), the patient's pseudonym (so ``lake forget`` finds the copy) and the
  series; the rest of the de-identified dataset is the row's ``header_json`` in the lake;
- ``review.json`` while a review action is under way (its run id and arguments), so a rerun after a
  crash completes the same action (:mod:`lake.review.actions`).

Every file is written to a temporary name and renamed, mode 0600 (folders 0700).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lake.config import vault_dir

if TYPE_CHECKING:
    from lake.ingest.worker import Processed

QUARANTINE = "quarantine"
FRAMES = "frames.npy"
META = "held.json"
INTENT = "review.json"


def quarantine_dir(key_path: Path) -> Path:
    """The vault's quarantine area of the lake whose key is ``key_path``."""
    return vault_dir(key_path) / QUARANTINE


def held_dir(key_path: Path, sop_uid: str) -> Path:
    if not sop_uid or "/" in sop_uid or sop_uid.startswith("."):
        raise ValueError(f"not a SOP Instance UID: {sop_uid!r}")
    return quarantine_dir(key_path) / sop_uid


@dataclass(frozen=True)
class HeldCopy:
    """One held instance: its frames and the array attributes a store write needs."""

    sop_uid: str
    frames: np.ndarray
    attributes: dict[str, Any]
    patient: str
    series: str


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _npy(frames: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(frames), allow_pickle=False)
    return buf.getvalue()


def write_held(key_path: Path, copy: HeldCopy) -> Path:
    """Hold ``copy`` in the vault (replacing an earlier copy of the same instance); returns its folder."""
    folder = held_dir(key_path, copy.sop_uid)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder.parent, 0o700)
    _write_atomic(folder / FRAMES, _npy(copy.frames))
    meta = {"attributes": copy.attributes, "patient": copy.patient, "series": copy.series}
    _write_atomic(folder / META, json.dumps(meta, sort_keys=True, default=str).encode())  # META last: complete
    return folder


def hold_quarantined(key_path: Path, results: Iterable[Processed]) -> int:
    """Hold the frames of every quarantined instance among ``results`` (an ingest batch, before its
    rows are committed: a crash in between leaves a copy the rerun writes again). Returns how many."""
    held = 0
    for result in results:
        if result.held is None:
            continue
        row = result.row
        copy = HeldCopy(
            str(row["SOPInstanceUID"]),
            result.held,
            result.array_attributes,
            result.patient_pseudonym,
            str(row.get("SeriesInstanceUID") or ""),
        )
        write_held(key_path, copy)
        held += 1
    return held


def has_held(key_path: Path, sop_uid: str) -> bool:
    folder = held_dir(key_path, sop_uid)
    return (folder / META).is_file() and (folder / FRAMES).is_file()


def read_held(key_path: Path, sop_uid: str) -> HeldCopy | None:
    """The held copy of ``sop_uid``, or None when the vault holds none."""
    if not has_held(key_path, sop_uid):
        return None
    folder = held_dir(key_path, sop_uid)
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    frames = np.load(folder / FRAMES, allow_pickle=False)
    return HeldCopy(sop_uid, frames, dict(meta["attributes"]), str(meta["patient"]), str(meta["series"]))


def delete_held(key_path: Path, sop_uid: str) -> bool:
    """Remove the held copy of ``sop_uid`` (and a pending review note); True if there was one."""
    folder = held_dir(key_path, sop_uid)
    if not folder.exists():
        return False
    gone = folder.with_name(folder.name + ".deleting")
    os.replace(folder, gone)  # one rename: the copy is either whole or gone
    shutil.rmtree(gone)
    return True


def delete_patients(key_path: Path, pseudonyms: Iterable[str]) -> int:
    """Remove every held copy of these patients (``lake forget``); returns how many were removed."""
    wanted = set(pseudonyms)
    root = quarantine_dir(key_path)
    if not root.is_dir():
        return 0
    removed = 0
    for folder in sorted(root.iterdir()):
        if folder.name.endswith(".deleting"):
            shutil.rmtree(folder, ignore_errors=True)  # a deletion cut short
            continue
        try:
            patient = json.loads((folder / META).read_text(encoding="utf-8")).get("patient")
        except (OSError, ValueError):
            patient = None  # a hold cut short before its note: the ingest that wrote it writes it again
        if patient is None or patient in wanted:
            shutil.rmtree(folder)
            removed += patient is not None
    return removed


def read_intent(key_path: Path, sop_uid: str) -> dict[str, Any] | None:
    path = held_dir(key_path, sop_uid) / INTENT
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def write_intent(key_path: Path, sop_uid: str, intent: dict[str, Any]) -> None:
    folder = held_dir(key_path, sop_uid)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_atomic(folder / INTENT, json.dumps(intent, sort_keys=True).encode())


def clear_intent(key_path: Path, sop_uid: str) -> None:
    (held_dir(key_path, sop_uid) / INTENT).unlink(missing_ok=True)
