"""``lake review``: a person decides what the ingest could not (quarantined or flagged pixels).

``list_queue`` lists the instances under review, ``preview`` renders one for a person to look at,
``release`` / ``mask`` / ``reject`` decide one (:mod:`lake.review.actions`). The original pixels of
a quarantined instance are held in the vault beside the key, never in the lake
(:mod:`lake.review.held`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lake.review.actions import Action, ReviewOutcome, mask, reject, release, review
from lake.review.queue import ReviewItem

__all__ = ["Action", "ReviewItem", "ReviewOutcome", "list_queue", "mask", "preview", "reject", "release", "review"]


def list_queue(root: str | os.PathLike[str], key_file: str | os.PathLike[str] | None = None) -> list[ReviewItem]:
    """The instances under review (quarantined first)."""
    from lake.core import Lake
    from lake.review import queue

    lk = Lake(root, key_file)
    return queue.list_queue(lk.paths, lk.key_path)


def preview(
    root: str | os.PathLike[str], sop_uid: str, frame: int = 0, key_file: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """uint8 image of frame ``frame`` of an instance under review, windowed as a reader sees it
    (the held original of a quarantined instance). Raises ``NotUnderReviewError``, ``NotInLakeError``."""
    from lake.core import Lake
    from lake.errors import ConfigError, NotUnderReviewError
    from lake.review import queue

    lk = Lake(root, key_file)
    row = queue.instance_row(lk.paths, sop_uid)
    if not queue.under_review(row):
        raise NotUnderReviewError(
            f"instance {sop_uid} is not under review: `lake review list` shows the instances that are"
        )
    frames = queue.frames_for_review(lk.paths, Path(lk.key_path), row, lk.pixel_store)
    if not 0 <= frame < frames.shape[0]:
        raise ConfigError(f"--frame {frame}: instance {sop_uid} has frames 0 to {frames.shape[0] - 1}")
    return queue.display_image(frames[frame], row)
