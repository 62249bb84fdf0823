"""``release``, ``mask`` and ``reject``: a person's decision on an instance under review.

Each action runs under the lake's write lock, in this order:

1. ``review.json`` beside the held copy in the vault notes the action and its run id;
2. ``release``/``mask``: the held frames (masked by the reviewer's boxes) are written to the pixel
   store exactly as an ingest writes an instance's frames (the same array key and next free frame,
   the same codec choice, verified, checksummed), then ``review.after_pixels``;
3. one Delta commit updates the instance's row (pixel columns and the ``pixel_phi_*`` verdict,
   method ``review``), then ``review.after_commit``, and the table fixity is recorded;
4. the ``runs`` row (operation ``review_<action>``: who, when, the boxes; the instance only as a
   keyed reference, so a later ``lake forget`` leaves nothing of the patient in ``runs``), then
   ``review.after_runs``; the vault's run log names the instance;
5. the held copy is deleted (for every action: the original pixels are PHI the lake now stores
   masked, or stores, or no longer wants).

A crash before 3 leaves the row as it was (frames written after the last committed one are
invisible; a new array is an orphan that ``lake vacuum`` or the rerun removes); running the same
command again does it all. A crash after 3 leaves a decided row and the note: the next review
command on that instance finishes 3-5 with the noted run id. A decided instance is not under
review: the same action again does nothing (``already``), another is refused.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np

from lake import memory
from lake.catalog.tables import open_table, snapshot_files
from lake.config import vault_dir
from lake.core import Lake
from lake.crashpoints import crash_point
from lake.deid.pixels import mask_regions
from lake.errors import ConfigError, NotUnderReviewError
from lake.fixity import record_table_fixity
from lake.lock import write_lock
from lake.maintenance.orphans import remove_orphans
from lake.pixels.store import frames_array_key
from lake.review import held as vault
from lake.review.queue import QUARANTINED, REVIEW_METHOD, instance_row, query, under_review
from lake.runs import append_run, new_run_id, utc_now

Box = tuple[int, int, int, int]


class Action(StrEnum):
    RELEASE = "release"
    MASK = "mask"
    REJECT = "reject"


#: pixel_phi_reason of a decided instance, per action.
DECIDED = {Action.RELEASE: "released", Action.MASK: "masked", Action.REJECT: "rejected"}


@dataclass(frozen=True)
class ReviewOutcome:
    run_id: str
    action: Action
    sop_uid: str
    status: str  # done, completed (a crashed run of it finished), already (decided before: nothing done)
    pixel_status: str
    boxes: int = 0


def reviewer_name(reviewer: str | None) -> str:
    if reviewer is not None:
        name = reviewer.strip()
        if not name or len(name) > 128 or any(not c.isprintable() for c in name):
            raise ConfigError(f"--reviewer {reviewer!r}: give a printable name of 1 to 128 characters")
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def check_boxes(boxes: Sequence[Sequence[int]], rows: int | None = None, cols: int | None = None) -> list[Box]:
    """Boxes ``(x0, y0, x1, y1)`` in pixels, end exclusive, inside the frame; raises ``ConfigError``."""
    out: list[Box] = []
    for box in boxes:
        if len(box) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in box):
            raise ConfigError(f"--box {' '.join(map(str, box))}: give four whole numbers x0 y0 x1 y1")
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 and 0 <= y0 < y1):
            raise ConfigError(f"--box {x0} {y0} {x1} {y1}: needs 0 <= x0 < x1 and 0 <= y0 < y1 (ends exclusive)")
        if rows is not None and cols is not None and (x1 > cols or y1 > rows):
            raise ConfigError(f"--box {x0} {y0} {x1} {y1} reaches outside the {cols} x {rows} (columns x rows) image")
        out.append((x0, y0, x1, y1))
    return out


def instance_ref(lk: Lake, sop_uid: str) -> str:
    """Keyed reference to an instance for the ``runs`` row (unlinkable without the key)."""
    return lk.key().digest("review-instance", sop_uid)[:16].hex()


def _sql_str(value: str | None) -> str:
    return "CAST(NULL AS STRING)" if value is None else "'" + value.replace("'", "''") + "'"


def _commit_row(lk: Lake, sop_uid: str, values: dict[str, Any]) -> None:
    """One Delta commit that sets ``values`` on the row of ``sop_uid``."""
    updates: dict[str, str] = {}
    for column, value in values.items():
        if value is None or isinstance(value, str):
            updates[column] = _sql_str(value)
        elif isinstance(value, float):
            updates[column] = f"CAST({value!r} AS DOUBLE)"
        else:
            updates[column] = f"CAST({int(value)} AS BIGINT)"
    dt = open_table(lk.paths.table("instances"))
    assert dt is not None
    dt.update(updates=updates, predicate=f"SOPInstanceUID = {_sql_str(sop_uid)}")


def _masked_fraction(frames: np.ndarray, boxes: list[Box]) -> float:
    area = np.zeros(frames.shape[1:3], dtype=bool)
    for x0, y0, x1, y1 in boxes:
        area[y0:y1, x0:x1] = True
    return float(area.mean()) if area.size else 0.0


def _store_frames(
    lk: Lake, row: dict[str, Any], frames: np.ndarray, attributes: dict[str, Any], run_id: str
) -> dict[str, Any]:
    """Write ``frames`` as an ingest's worker writes an instance's frames (an array written once, named
    by its content, :func:`lake.pixels.store.frames_array_key`); the row's pixel columns."""
    sha = hashlib.sha256(frames.tobytes()).hexdigest()
    named_by = [f"{sha} {row.get('source_ref') or ''}", json.dumps(attributes, sort_keys=True, default=str)]
    key = frames_array_key(row["SeriesInstanceUID"] or "no-series", frames, named_by)
    lk.pixel_store.write_new(key, frames, attributes, run=run_id)  # False: a rerun of this action wrote it
    return {
        "pixel_array": key,
        "pixel_frame_start": 0,
        "frame_count": int(frames.shape[0]),
        "pixel_dtype": frames.dtype.name,
        "pixel_bytes": int(frames.nbytes),
        "pixel_sha256": sha,
    }


def _decided_action(row: dict[str, Any]) -> Action | None:
    if row.get("pixel_phi_method") != REVIEW_METHOD:
        return None
    return next((a for a, why in DECIDED.items() if why == row.get("pixel_phi_reason")), None)


def _log(lk: Lake, run_id: str, entry: dict[str, Any]) -> None:
    """The vault's run log of a review run (it names the instance; the lake's ``runs`` row does not)."""
    folder = vault_dir(lk.key_path) / "runs"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / f"{run_id}.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def _run_recorded(lk: Lake, run_id: str) -> bool:
    """Whether the ``runs`` table holds a row of ``run_id``."""

    files = snapshot_files(lk.paths.table("runs"))
    if not files:
        return False
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    with memory.connect("review", ordered=False) as con:
        found = con.execute(f"SELECT count(*) FROM read_parquet([{listed}]) WHERE run_id = ?", [run_id]).fetchone()
    return bool(found and found[0])


def _committed_arrays(lk: Lake) -> set[str]:
    rows = query(lk.paths, "SELECT DISTINCT pixel_array AS a FROM {src} WHERE pixel_array IS NOT NULL")
    return {str(r["a"]) for r in rows}


def _finish(lk: Lake, intent: dict[str, Any], sop_uid: str) -> None:
    """Steps 3 (fixity) to 5 of a decided instance's noted action (idempotent)."""
    run_id = str(intent["run_id"])
    record_table_fixity(lk.paths, run_id)
    if not _run_recorded(lk, run_id):
        started = datetime.fromisoformat(str(intent["started"]))
        operation = f"review_{intent['action']}"
        append_run(lk.paths, run_id, operation, started, dict(intent["parameters"]), dict(intent["counts"]), "ok")
    crash_point("review.after_runs")
    vault.delete_held(lk.key_path, sop_uid)


def review(
    root: str | os.PathLike[str],
    sop_uid: str,
    action: Action | str,
    boxes: Sequence[Sequence[int]] = (),
    reviewer: str | None = None,
    key_file: str | os.PathLike[str] | None = None,
) -> ReviewOutcome:
    """Decide one instance under review (see the module doc). ``boxes`` (``mask`` only): ``(x0, y0,
    x1, y1)`` in pixels, end exclusive, masked in every frame.

    Raises :class:`NotUnderReviewError` for an instance not under review (or decided otherwise),
    :class:`~lake.errors.NotInLakeError` for a UID not in the lake, ``ConfigError`` for bad boxes.
    """
    action = Action(action)
    boxes = check_boxes(boxes)
    if action is Action.MASK and not boxes:
        raise ConfigError("lake review mask needs at least one --box x0 y0 x1 y1")
    if action is not Action.MASK and boxes:
        raise ConfigError(f"--box is for `lake review mask`, not {action.value}")
    who = reviewer_name(reviewer)
    lk = Lake(root, key_file)
    lk.key()  # the vault beside this key is the lake's own
    with write_lock(lk.paths.lock):
        row = instance_row(lk.paths, sop_uid)
        intent = vault.read_intent(lk.key_path, sop_uid)
        decided = _decided_action(row)
        if decided is not None:
            completed = intent is not None and intent.get("action") == decided.value
            if completed:
                assert intent is not None
                _finish(lk, intent, sop_uid)
            if decided is not action:
                raise NotUnderReviewError(
                    f"instance {sop_uid} is not under review: a review {DECIDED[decided]} it "
                    f"(pixel_phi_method review); `lake review list` shows what waits for a decision"
                )
            run = str(intent["run_id"]) if completed and intent is not None else ""
            return ReviewOutcome(
                run, action, sop_uid, "completed" if completed else "already", str(row["pixel_status"])
            )
        if not under_review(row):
            raise NotUnderReviewError(
                f"instance {sop_uid} is not under review (pixel_status {row.get('pixel_status')}, pixel_reason "
                f"{row.get('pixel_reason') or 'none'}): `lake review list` shows the instances that are"
            )
        return _decide(lk, row, action, boxes, who)


def _decide(lk: Lake, row: dict[str, Any], action: Action, boxes: list[Box], who: str) -> ReviewOutcome:
    sop = str(row["SOPInstanceUID"])
    run_id = new_run_id("W")
    started = utc_now()
    quarantined = row["pixel_status"] == QUARANTINED
    copy = vault.read_held(lk.key_path, sop) if quarantined else None
    if quarantined and copy is None and action is not Action.REJECT:
        raise NotUnderReviewError(
            f"the vault holds no copy of instance {sop}'s pixels (quarantined before `lake review` held copies): "
            f"only `lake review reject` can decide it; ingest its file into a new lake to review its pixels"
        )
    if not quarantined and action is not Action.RELEASE:
        raise NotUnderReviewError(
            f"instance {sop} is flagged, its pixels already stored: `lake review release` accepts them; to "
            f"mask or remove stored pixels, withdraw the patient (`lake forget`) and ingest again under `mask`"
        )
    values: dict[str, Any] = {"pixel_phi_method": REVIEW_METHOD, "pixel_phi_reason": DECIDED[action]}
    if copy is not None:
        check_boxes(boxes, int(copy.frames.shape[1]), int(copy.frames.shape[2]))
    parameters: dict[str, Any] = {
        "action": action.value,
        "reviewer": who,
        "instance_ref": instance_ref(lk, sop),
        "boxes": [list(b) for b in boxes],
    }
    counts = {"instances": 1, "boxes": len(boxes), "from_status": row["pixel_status"]}
    intent = {"run_id": run_id, "action": action.value, "started": started.isoformat(), "parameters": parameters,
              "counts": counts}  # fmt: skip
    vault.write_intent(lk.key_path, sop, intent)
    _log(lk, run_id, {"sop_instance_uid": sop, "action": action.value, "reviewer": who, "boxes": parameters["boxes"]})
    remove_orphans(lk.paths, _committed_arrays(lk))  # what a crashed run of this (or an ingest) left
    if action is Action.REJECT:
        values.update(pixel_reason="rejected:review")
    elif copy is not None:
        frames = mask_regions(copy.frames, boxes) if boxes else copy.frames
        values.update(_store_frames(lk, row, frames, copy.attributes, run_id))
        crash_point("review.after_pixels")
        values.update(
            pixel_status="stored",
            pixel_reason="masked:review" if boxes else "released:review",
            pixel_phi_boxes=len(boxes),
            pixel_phi_masked_fraction=round(_masked_fraction(frames, boxes), 6),
        )
    else:  # a flagged instance: its stored pixels are accepted as they are
        values.update(pixel_reason="released:review")
    _commit_row(lk, sop, values)
    crash_point("review.after_commit")
    _finish(lk, intent, sop)
    return ReviewOutcome(run_id, action, sop, "done", str(values.get("pixel_status", row["pixel_status"])), len(boxes))


def release(root: str | os.PathLike[str], sop_uid: str, **kwargs: Any) -> ReviewOutcome:
    """Store a quarantined instance's held pixels unchanged (or accept a flagged one's)."""
    return review(root, sop_uid, Action.RELEASE, **kwargs)


def mask(root: str | os.PathLike[str], sop_uid: str, boxes: Sequence[Sequence[int]], **kwargs: Any) -> ReviewOutcome:
    """Store a quarantined instance's held pixels with ``boxes`` (x0, y0, x1, y1) set to 0 in every frame."""
    return review(root, sop_uid, Action.MASK, boxes, **kwargs)


def reject(root: str | os.PathLike[str], sop_uid: str, **kwargs: Any) -> ReviewOutcome:
    """Never store a quarantined instance's pixels: the held copy is deleted and the decision recorded."""
    return review(root, sop_uid, Action.REJECT, **kwargs)
