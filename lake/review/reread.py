"""Instances an earlier run stored unread, read again once their series has text (issue 14).

OCR reads a long derived series on a sample (:func:`lake.deid.pixels.in_series_sample`); an
instance left out is stored unread (``pixel_phi_reason`` ``series_sampled_clean``) when no instance
of its series had text *then*. A later run that finds text in that series reads all of its own
instances (:mod:`lake.ingest.sampling`) but cannot re-read the earlier ones from their files, which
may be gone. :func:`reread_series_with_text`, called at the end of each ingest under its write
lock, reads those instances' stored (de-identified) frames from the lake with the same OCR the
ingest uses, windowed alike; where text is found the masked frames are stored exactly as
``lake review mask`` stores them (:mod:`lake.review.actions`: an array written once, named by its
content, verified, checksummed) and the row's pixel columns and ``pixel_phi_*`` verdict are updated (reason
``text_found``: the original header's identifiers, which rank the text read, are gone); where none
is found the verdict becomes ``no_text_found`` with the frames read, as a fresh ingest records it.

Crash safety, in this order: a note in the vault (``reread.json``: the run id and when it began);
per instance the frames written, then ``reread.after_pixels``, one Delta commit of its row, then
``reread.after_commit``; at the end the table fixity, the ``runs`` row (operation ``reread``,
counts only) and the note removed. An array written but not committed is an orphan (the next
write of it finds it, named alike; the cleanup removes it otherwise); a row committed stays
decided; a run that crashed is recorded in ``runs`` by the next one (from its note) and its
remaining instances are read then.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset

from lake.config import vault_dir
from lake.core import Lake
from lake.crashpoints import crash_point
from lake.deid import pixels
from lake.deid.policy import PixelPolicy
from lake.fixity import record_table_fixity
from lake.pixels.decode import DecodedPixels
from lake.review.actions import _commit_row, _run_recorded, _store_frames
from lake.review.queue import _number, query
from lake.runs import append_run, new_run_id, utc_now

UNREAD = "series_sampled_clean"
TEXT_REASONS = ("text_found", "identifier_in_text")
NOTE = "reread.json"


def _unread_in_series_with_text(lk: Lake) -> list[dict[str, Any]]:
    """Rows stored unread whose series has an instance with text found by OCR."""
    reasons = ", ".join(f"'{r}'" for r in TEXT_REASONS)
    return query(
        lk.paths,
        "SELECT * EXCLUDE (header_json) FROM {src} WHERE pixel_status = 'stored' AND pixel_phi_reason = ? "
        "AND pixel_array IS NOT NULL AND SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM {src} "
        f"WHERE pixel_phi_reason IN ({reasons})) ORDER BY SeriesInstanceUID, SOPInstanceUID",
        [UNREAD],
    )


def _assessment(row: dict[str, Any]) -> pixels.PixelAssessment:
    """How the ingest read this instance's frames: its own window and modality rescale."""
    center, width = _number(row.get("WindowCenter")), _number(row.get("WindowWidth"))
    slope, intercept = _number(row.get("RescaleSlope")), _number(row.get("RescaleIntercept"))
    window = (center, width) if center is not None and width is not None and width > 0 else None
    return pixels.PixelAssessment("series_with_text", None, window=window, rescale=(slope or 1.0, intercept or 0.0))


def _note_path(lk: Lake) -> Path:
    return vault_dir(lk.key_path) / NOTE


def _record_crashed(lk: Lake) -> None:
    """The ``runs`` row of a re-read that crashed after committing rows (from its note)."""
    path = _note_path(lk)
    if not path.is_file():
        return
    note = json.loads(path.read_text(encoding="utf-8"))
    if not _run_recorded(lk, str(note["run_id"])):
        started = datetime.fromisoformat(str(note["started"]))
        append_run(lk.paths, str(note["run_id"]), "reread", started, {}, {"completed_by_next_run": True}, "crashed")
    path.unlink()


def reread_series_with_text(lk: Lake, on_message: Callable[[str], None] | None = None) -> dict[str, int]:
    """Read the instances stored unread in series that have text, mask what is found (see the module
    doc); the caller holds the lake's write lock. Returns the counts (read, masked); a message for the
    console when any was read."""
    _record_crashed(lk)
    finder = pixels.text_finder()
    rows = _unread_in_series_with_text(lk) if finder is not None else []
    if not rows:
        return {"read": 0, "masked": 0}
    run_id, started = new_run_id("T"), utc_now()
    note = _note_path(lk)
    note.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    note.write_text(json.dumps({"run_id": run_id, "started": started.isoformat()}) + "\n", encoding="utf-8")
    masked = 0
    for n, row in enumerate(rows, 1):
        masked += _reread(lk, row, run_id)
        if on_message and n % 20 == 0:
            on_message(f"re-reading instances stored unread in series with text: {n} of {len(rows)}")
    counts = {"read": len(rows), "masked": masked, "series": len({r["SeriesInstanceUID"] for r in rows})}
    record_table_fixity(lk.paths, run_id)
    append_run(lk.paths, run_id, "reread", started, {"policy": PixelPolicy.MASK_OR_QUARANTINE.value}, counts, "ok")
    note.unlink()
    if on_message:
        on_message(
            f"re-read {counts['read']} instances an earlier run stored unread in {counts['series']} series "
            f"with text: {masked} masked"
        )
    return {"read": len(rows), "masked": masked}


def _reread(lk: Lake, row: dict[str, Any], run_id: str) -> bool:
    """One instance: read, and masked and stored where text is found; True if it was masked."""
    frames = np.asarray(
        lk.pixel_store.read(str(row["pixel_array"]), int(row["pixel_frame_start"]), int(row["frame_count"]))
    )
    stored = DecodedPixels(frames=frames, status="stored")
    decided = pixels.decide(Dataset(), stored, PixelPolicy.MASK, _assessment(row), every_instance=True)
    values: dict[str, Any] = dict(decided.phi.columns())
    text = decided.phi.reason in TEXT_REASONS and decided.frames is not None
    if text:
        assert decided.frames is not None
        attributes = lk.pixel_store.attributes(str(row["pixel_array"]))
        values.update(_store_frames(lk, row, decided.frames, attributes, run_id))
        crash_point("reread.after_pixels")
        values.update(pixel_status="stored", pixel_reason=decided.reason)
    _commit_row(lk, str(row["SOPInstanceUID"]), values)
    crash_point("reread.after_commit")
    return text
