"""The review queue: which instances wait for a person, and a preview of their pixels.

An instance is *under review* when the ingest quarantined its pixels (``pixel_status`` quarantined:
the original frames are held in the vault, :mod:`lake.review.held`) or stored them flagged
(``pixel_reason`` ``flagged:...`` under ``keep-flagged``, ``unmasked_...`` under ``mask``), and no
review decided it yet (``pixel_phi_method`` is not ``review``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lake import memory
from lake.catalog.tables import snapshot_files
from lake.config import LakePaths
from lake.errors import NotInLakeError, NotUnderReviewError

REVIEW_METHOD = "review"
QUARANTINED = "quarantined"
_FLAGGED_PREFIXES = ("flagged:", "unmasked_")


@dataclass(frozen=True)
class ReviewItem:
    """One instance in the queue (every field is lake data: de-identified UIDs, reason codes)."""

    sop_uid: str
    series_uid: str
    modality: str
    pixel_status: str
    pixel_reason: str
    phi_reason: str
    held: bool  # the vault holds its original frames (what release and mask need)

    @property
    def kind(self) -> str:
        return "quarantined" if self.pixel_status == QUARANTINED else "flagged"


def is_flagged(row: dict[str, Any]) -> bool:
    return row.get("pixel_status") == "stored" and str(row.get("pixel_reason") or "").startswith(_FLAGGED_PREFIXES)


def under_review(row: dict[str, Any]) -> bool:
    if row.get("pixel_phi_method") == REVIEW_METHOD:
        return False
    return row.get("pixel_status") == QUARANTINED or is_flagged(row)


def _source(files: list[str]) -> str:
    return "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "], union_by_name = true)"


def query(paths: LakePaths, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Rows of ``sql`` with ``{src}`` standing for the instances snapshot ([] without a table)."""
    files = snapshot_files(paths.table("instances"))
    if not files:
        return []
    with memory.connect("review", ordered=False) as con:
        cur = con.execute(sql.format(src=_source(files)), params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def instance_row(paths: LakePaths, sop_uid: str) -> dict[str, Any]:
    """The committed ``instances`` row of ``sop_uid`` (every column but ``header_json``)."""
    rows = query(paths, "SELECT * EXCLUDE (header_json) FROM {src} WHERE SOPInstanceUID = ?", [sop_uid])
    if not rows:
        raise NotInLakeError(f"no instance {sop_uid} in this lake: `lake review list` shows the instances under review")
    return rows[0]


def list_queue(paths: LakePaths, key_path: Path) -> list[ReviewItem]:
    """Every instance under review, quarantined first, then by series and UID."""
    from lake.review.held import has_held

    rows = query(
        paths,
        "SELECT SOPInstanceUID, SeriesInstanceUID, Modality, pixel_status, pixel_reason, pixel_phi_method, "
        "pixel_phi_reason FROM {src} WHERE (pixel_status = 'quarantined' OR (pixel_status = 'stored' AND "
        "(starts_with(pixel_reason, 'flagged:') OR starts_with(pixel_reason, 'unmasked_')))) "
        "AND coalesce(pixel_phi_method, '') <> 'review' "
        "ORDER BY pixel_status <> 'quarantined', SeriesInstanceUID, SOPInstanceUID",
    )
    return [
        ReviewItem(
            str(r["SOPInstanceUID"]),
            str(r["SeriesInstanceUID"] or ""),
            str(r["Modality"] or ""),
            str(r["pixel_status"]),
            str(r["pixel_reason"] or ""),
            str(r["pixel_phi_reason"] or ""),
            has_held(key_path, str(r["SOPInstanceUID"])),
        )
        for r in rows
    ]


def _number(value: object) -> float | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    try:
        return None if value is None else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def display_image(frame: np.ndarray, row: dict[str, Any]) -> np.ndarray:
    """uint8 image of one frame as a reader would see it: modality LUT, then the instance's own window
    (without one, the frame's full range, so text drawn at an extreme value stays visible)."""
    from lake.deid.ocr import display_frame
    from lake.pixels.render import to_display

    if frame.ndim == 3:  # colour: scaled from its dtype's range
        return to_display(frame)
    slope, intercept = _number(row.get("RescaleSlope")) or 1.0, _number(row.get("RescaleIntercept")) or 0.0
    values = frame.astype(np.float64) * slope + intercept
    center, width = _number(row.get("WindowCenter")), _number(row.get("WindowWidth"))
    window = (center, width) if center is not None and width is not None and width > 0 else None
    image = display_frame(values, window)
    if str(row.get("PhotometricInterpretation") or "").upper() == "MONOCHROME1":
        image = 255 - image
    return image


def frames_for_review(paths: LakePaths, key_path: Path, row: dict[str, Any], pixel_store: Any) -> np.ndarray:
    """The frames a reviewer looks at: the held original of a quarantined instance, the stored ones
    of a flagged instance. Raises :class:`NotUnderReviewError` when there are none."""
    from lake.review.held import read_held

    sop = str(row["SOPInstanceUID"])
    if row.get("pixel_status") == QUARANTINED:
        held = read_held(key_path, sop)
        if held is None:
            raise NotUnderReviewError(
                f"the vault holds no copy of instance {sop}'s pixels (quarantined before `lake review` held "
                "copies, or rejected): ingest its file into a new lake to review it"
            )
        return held.frames
    if row.get("pixel_array"):
        return np.asarray(
            pixel_store.read(str(row["pixel_array"]), int(row["pixel_frame_start"]), int(row["frame_count"]))
        )
    raise NotUnderReviewError(f"instance {sop} has no pixels to show (pixel_status {row.get('pixel_status')})")
