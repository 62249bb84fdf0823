"""Pixels that may carry burned-in identifiers: detection and the per-lake policy.

An instance is *at risk* when it says ``BurnedInAnnotation YES``, is of a SOP class whose
pixels routinely carry text (ultrasound, secondary capture, screenshots, dose reports), or matches
a graylist/blacklist rule of the ``deid`` package (:mod:`lake.deid.burned_in`). The policy
decides what the lake stores:

- ``mask``: blank the regions a rule knows (see :mod:`lake.deid.burned_in`), keep the rest;
- ``quarantine``: store the header row (marked) but not the pixels;
- ``keep-flagged``: store the pixels unchanged, flagged in ``instances.pixel_reason``;
- ``mask-or-quarantine`` (default): mask where a rule knows the region, quarantine otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

from lake.deid import burned_in
from lake.deid.policy import PixelPolicy
from lake.pixels.decode import DecodedPixels

AT_RISK_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.6.1": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.6.2": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.3.1": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.7": "secondary_capture",
    "1.2.840.10008.5.1.4.1.1.7.1": "secondary_capture",
    "1.2.840.10008.5.1.4.1.1.7.2": "secondary_capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "secondary_capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "secondary_capture",
    "1.2.840.10008.5.1.4.1.1.104.1": "encapsulated_pdf",
    "1.2.840.10008.5.1.4.1.1.88.67": "dose_report",
}


#: Finds regions to blank: returns (reason, [(x0, y0, x1, y1), ...]) or None when no rule knows
#: this instance. Set by :mod:`lake.deid.burned_in`, which wraps the ``deid`` package's rules.
RegionFinder = Callable[[Dataset], tuple[str, list[tuple[int, int, int, int]]] | None]
_region_finder: RegionFinder | None = burned_in.find_regions
_use_rules = True


def set_region_finder(finder: RegionFinder | None, use_rules_for_risk: bool = True) -> None:
    """Replace the region finder (default: the ``deid`` rules); optionally stop using rules for risk."""
    global _region_finder, _use_rules
    _region_finder = finder
    _use_rules = use_rules_for_risk


def risk_reason(ds: Dataset) -> str | None:
    """Why this instance's pixels may carry burned-in identifiers, or None."""
    if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        return "burned_in_annotation_yes"
    kind = AT_RISK_SOP_CLASSES.get(str(ds.get("SOPClassUID", "") or ""))
    if kind:
        return f"at_risk_sop_class:{kind}"
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "SCREEN SAVE" in image_type or "SCREENSHOT" in image_type:
        return "at_risk_image_type:screen_save"
    return burned_in.rule_risk(ds) if _use_rules else None


def mask_regions(frames: np.ndarray, regions: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Copy of ``frames`` with each (x0, y0, x1, y1) box (exclusive ends) set to 0 in every frame."""
    out = frames.copy()
    for x0, y0, x1, y1 in regions:
        out[:, max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0), ...] = 0
    return out


@dataclass(frozen=True)
class PixelAssessment:
    """Risk of burned-in text (None: not at risk) and the regions a rule knows, from one header."""

    reason: str | None
    found: tuple[str, list[tuple[int, int, int, int]]] | None


def assess(ds: Dataset) -> PixelAssessment:
    """Assess ``ds`` before de-identification: the rules look at the original header (dates,
    descriptions), which de-identification empties or cleans."""
    reason = risk_reason(ds)
    found = _region_finder(ds) if reason is not None and _region_finder is not None else None
    return PixelAssessment(reason, found)


def apply_pixel_policy(
    ds: Dataset, pixels: DecodedPixels, policy: PixelPolicy | str, assessment: PixelAssessment | None = None
) -> tuple[np.ndarray | None, str, str | None]:
    """(frames to store or None, pixel_status, pixel_reason) for a decoded instance.

    ``assessment`` is :func:`assess` of the original header; without it ``ds`` is assessed now.
    """
    policy = PixelPolicy(policy)
    if pixels.frames is None:
        return None, pixels.status, pixels.reason
    assessment = assessment or assess(ds)
    reason = assessment.reason
    if reason is None:
        return pixels.frames, "stored", None
    if policy is PixelPolicy.KEEP_FLAGGED:
        return pixels.frames, "stored", f"flagged:{reason}"
    if policy is PixelPolicy.QUARANTINE:
        return None, "quarantined", reason
    found = assessment.found
    if found is not None:
        rule, regions = found
        return mask_regions(pixels.frames, regions), "stored", f"masked:{rule}"
    if policy is PixelPolicy.MASK:
        return pixels.frames, "stored", f"unmasked_no_rule:{reason}"
    return None, "quarantined", reason
