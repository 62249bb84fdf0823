"""Pixels that may carry burned-in identifiers: what is at risk, what is read, what is stored.

An instance is *at risk* when it says ``BurnedInAnnotation YES``, is of a SOP class whose pixels
routinely carry text (ultrasound, secondary capture, screenshots, dose reports, visible-light
photography, whole-slide images), is a derived or secondary image, or matches a graylist/blacklist
rule of the ``deid`` package (:mod:`lake.deid.burned_in`). Under the default policy
(``mask-or-quarantine``) an at-risk image is read by OCR (:mod:`lake.deid.ocr`, windowed to its own
display range; a multi-frame image on a sample of frames, every frame once one has text; a long
derived series on a sample of instances, each chosen from the instance alone,
:func:`in_series_sample`, and every instance of a series once one has text,
:mod:`lake.ingest.sampling`): the text lines found are masked (padded) together with the regions
the ``deid`` rules know, and the masked pixels are what the lake stores. In a multi-frame image a
line on a ground that stays still, or found at the same place in most frames read, is an overlay
masked in every frame; one found in a few frames, on a ground that moves, is masked in those
frames only (:func:`frame_boxes`). An image with no text found is stored like any other. What
cannot be decided is quarantined (header row only): Recognizable Visual Features YES, a whole-slide LABEL, OCR failing,
or OCR not installed where no rule knows the region. Each instance's verdict is in the
``pixel_phi_*`` columns (method, reason, boxes, masked fraction, frames read), never the text read;
the text is compared with the header's identifiers in memory only, to rank the risk
(``identifier_in_text`` above ``text_found``).

The other policies: ``mask`` stores everything, masked where text or a rule region was found;
``quarantine`` stores no at-risk pixels; ``keep-flagged`` stores them unchanged, flagged in
``pixel_reason``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.multival import MultiValue

from lake import diagnostics
from lake.deid import burned_in, ocr
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
    "1.2.840.10008.5.1.4.1.1.77.1.1": "visible_light",  # endoscopic
    "1.2.840.10008.5.1.4.1.1.77.1.2": "visible_light",  # microscopic
    "1.2.840.10008.5.1.4.1.1.77.1.3": "visible_light",  # slide-coordinates microscopic
    "1.2.840.10008.5.1.4.1.1.77.1.4": "visible_light",  # photographic
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "visible_light",  # video photographic
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "visible_light",  # ophthalmic photography 8 bit
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": "visible_light",  # ophthalmic photography 16 bit
    "1.2.840.10008.5.1.4.1.1.77.1.6": "whole_slide",
}
WSI_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)


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


def _image_type(ds: Dataset) -> list[str]:
    value = ds.get("ImageType") or []
    return [str(v).strip().upper() for v in ([value] if isinstance(value, str) else value)]


def risk_reason(ds: Dataset) -> str | None:
    """Why this instance's pixels may carry burned-in identifiers, or None."""
    return _listed_risk(ds) or (burned_in.rule_risk(ds) if _use_rules else None)


def _listed_risk(ds: Dataset) -> str | None:
    """:func:`risk_reason` but the deid rules (which look at the whole header)."""
    if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        return "burned_in_annotation_yes"
    kind = AT_RISK_SOP_CLASSES.get(str(ds.get("SOPClassUID", "") or ""))
    if kind:
        return f"at_risk_sop_class:{kind}"
    image_type = _image_type(ds)
    if "SCREEN SAVE" in image_type or "SCREENSHOT" in image_type:
        return "at_risk_image_type:screen_save"
    derived = "DERIVED" in image_type[:1] or "SECONDARY" in image_type[1:2]
    if derived and str(ds.get("Modality", "") or "").upper() in ("CT", "MR"):  # as deid's catch-all rule
        return "at_risk_image_type:derived"
    return None


#: What :func:`expected_ocr_frames` needs of a header (a reader may parse these alone).
COST_KEYWORDS = (
    "BurnedInAnnotation", "SOPClassUID", "ImageType", "Modality", "NumberOfFrames", "Rows", "Columns",
    "InstanceNumber",
)  # fmt: skip


def expected_ocr_frames(ds: Dataset) -> float:
    """How many frames of 512 x 512 OCR is expected to read of this instance, from the
    :data:`COST_KEYWORDS` of its header alone (0: not at risk). The deid rules, which need the whole
    header, play no part: an estimate, which the ingest cuts its units of work by, so that the
    OCR of a multi-frame ultrasound does not land in one worker with 63 other files at risk."""
    reason = _listed_risk(ds)
    if reason is None:
        return 0.0
    frames = _number(ds.get("NumberOfFrames")) or 1.0  # every frame, once one has text
    rows, cols = _number(ds.get("Rows")) or 512.0, _number(ds.get("Columns")) or 512.0
    area = max(0.25, rows * cols / 512**2)
    number = _number(ds.get("InstanceNumber"))
    sampled_out = reason == "at_risk_image_type:derived" and number is not None and not 1 <= number <= SERIES_FULL
    return max(1.0, frames) * area / (SERIES_STRIDE if sampled_out else 1)


def undecidable_reason(ds: Dataset) -> str | None:
    """Why reading the pixels cannot clear this instance (a face, a slide label), or None."""
    if str(ds.get("RecognizableVisualFeatures", "") or "").strip().upper() == "YES":
        return "recognizable_visual_features"
    if str(ds.get("SOPClassUID", "") or "") == WSI_CLASS and "LABEL" in _image_type(ds):
        return "wsi_label"  # handwriting and printed labels that OCR reads poorly
    return None


def mask_regions(frames: np.ndarray, regions: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Copy of ``frames`` with each (x0, y0, x1, y1) box (exclusive ends) set to 0 in every frame."""
    out = frames.copy()
    for x0, y0, x1, y1 in regions:
        out[:, max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0), ...] = 0
    return out


def mask_frame_regions(frames: np.ndarray, regions: dict[int, list[Box]]) -> np.ndarray:
    """Copy of ``frames`` with each box of ``regions[i]`` (x0, y0, x1, y1) set to 0 in frame i only."""
    out = frames.copy()
    for i, boxes in regions.items():
        for x0, y0, x1, y1 in boxes:
            out[i, max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0), ...] = 0
    return out


@dataclass(frozen=True)
class PixelAssessment:
    """Risk of burned-in text (None: not at risk) and the regions a rule knows, from one header.

    ``identifiers`` (the original header's names, IDs and dates, in memory only) rank the text read;
    ``window`` is the image's own display range; ``instance_number`` places the instance in its
    series, for sampling (:func:`in_series_sample`).
    """

    reason: str | None
    found: tuple[str, list[tuple[int, int, int, int]]] | None
    undecidable: str | None = None
    identifiers: tuple[str, ...] = field(default=(), repr=False)
    window: tuple[float, float] | None = None
    rescale: tuple[float, float] = (1.0, 0.0)
    instance_number: int | None = None
    sampled: bool = False  # the risk allows sampling a long series (derived images, rule flags)


def _number(value: object) -> float | None:
    try:
        if isinstance(value, list | tuple | MultiValue):
            value = value[0] if value else None
        return None if value is None or value == "" else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError):
        return None


def _identifiers(ds: Dataset) -> tuple[str, ...]:
    out: set[str] = set()
    for keyword in ("PatientName", "PatientID", "OtherPatientIDs", "AccessionNumber", "PatientBirthDate",
                    "StudyDate", "InstitutionName", "ReferringPhysicianName", "OperatorsName"):  # fmt: skip
        value = ds.get(keyword)
        if value is None:
            continue
        for item in value if isinstance(value, MultiValue | list) else [value]:
            for part in str(item).replace("^", " ").replace(",", " ").split():
                if len(part) >= 3:
                    out.add(ocr_key(part))
    return tuple(sorted(out))


def ocr_key(text: str) -> str:
    """Letters and digits of ``text``, upper case (how identifiers and text read are compared)."""
    return "".join(c for c in text.upper() if c.isalnum())


def assess(ds: Dataset) -> PixelAssessment:
    """Assess ``ds`` before de-identification: the rules look at the original header (dates,
    descriptions), which de-identification empties or cleans."""
    reason = risk_reason(ds)
    if reason is None:
        return PixelAssessment(None, None)
    found = _region_finder(ds) if _region_finder is not None else None
    center, width = _number(ds.get("WindowCenter")), _number(ds.get("WindowWidth"))
    slope, intercept = _number(ds.get("RescaleSlope")), _number(ds.get("RescaleIntercept"))
    number = _number(ds.get("InstanceNumber"))
    return PixelAssessment(
        reason,
        found,
        undecidable_reason(ds),
        _identifiers(ds),
        (center, width) if center is not None and width is not None and width > 0 else None,
        (slope if slope else 1.0, intercept or 0.0),
        int(number) if number is not None and number.is_integer() else None,
        sampled=reason in ("at_risk_image_type:derived",) or reason.startswith("deid_rule:"),
    )


@dataclass(frozen=True)
class PixelPhi:
    """The verdict on an instance's pixels (the ``pixel_phi_*`` columns); never the text read."""

    method: str  # none, policy, rules, ocr, ocr+rules, review
    reason: str  # not_at_risk, no_text_found, text_found, identifier_in_text, rule_region, ...
    boxes: int = 0  # boxes masked
    masked_fraction: float = 0.0  # of each frame's area
    frames_read: int = 0  # frames OCR read

    def columns(self) -> dict[str, object]:
        return {
            "pixel_phi_method": self.method,
            "pixel_phi_reason": self.reason,
            "pixel_phi_boxes": self.boxes,
            "pixel_phi_masked_fraction": round(self.masked_fraction, 6),
            "pixel_phi_frames_read": self.frames_read,
        }


@dataclass(frozen=True)
class SeriesSample:
    """Where an instance of a sampled series stands: read by OCR or not, and text found in it.

    The ingest (:mod:`lake.ingest.sampling`) holds the instances not read until its input ends, and
    reads every one of a series in which any instance had text."""

    read: bool
    text: bool = False


@dataclass(frozen=True)
class PixelDecision:
    frames: np.ndarray | None
    status: str
    reason: str | None
    phi: PixelPhi
    sample: SeriesSample | None = None  # set for an instance of a sampled series (derived, rule flags)


#: Reads text in one uint8 grey frame: the text lines found. Default :func:`lake.deid.ocr.find_text`
#: where OCR is available (else None: at-risk images without a rule region are quarantined).
TextFinder = Callable[[np.ndarray], list[ocr.TextBox]]
_UNSET: Any = object()
_text_finder: TextFinder | None = _UNSET


def set_text_finder(finder: TextFinder | None) -> None:
    """Replace the text finder (None: no OCR, as where Tesseract is not installed)."""
    global _text_finder
    _text_finder = finder


def text_finder() -> TextFinder | None:
    global _text_finder
    if _text_finder is _UNSET:
        _text_finder = ocr.find_text if ocr.available() else None
    return _text_finder


SAMPLE_FRAMES = 6  # frames read first of a multi-frame instance (escalation: every frame)
SERIES_FULL = 4  # instances numbered 1 to this of a sampled series are read
SERIES_STRIDE = 8  # and about one in this many of the others, chosen by a digest of the instance's UID


def in_series_sample(ds: Dataset, assessment: PixelAssessment) -> bool:
    """Whether OCR reads this instance of a sampled series (a long derived series costs seconds).

    A function of the instance alone, so that the verdict does not depend on which worker process
    got which file, nor on the input's order: instances numbered 1 to :data:`SERIES_FULL` (or not
    numbered) are read, and the others whose SOP Instance UID's digest falls in one of
    :data:`SERIES_STRIDE` classes. ``ds`` is the de-identified header: its UID is the keyed one.
    """
    number = assessment.instance_number
    if not assessment.sampled or number is None or 1 <= number <= SERIES_FULL:
        return True
    uid = str(ds.get("SOPInstanceUID", "") or "")
    return hashlib.sha256(b"lake.ocr-sample\0" + uid.encode()).digest()[0] % SERIES_STRIDE == 0


def _frame_order(n: int) -> tuple[list[int], list[int]]:
    if n <= SAMPLE_FRAMES:
        return list(range(n)), []
    first = sorted({round(i * (n - 1) / (SAMPLE_FRAMES - 1)) for i in range(SAMPLE_FRAMES)})
    return first, [i for i in range(n) if i not in set(first)]


def read_text(
    frames: np.ndarray, assessment: PixelAssessment, finder: TextFinder
) -> tuple[list[tuple[int, ocr.TextBox]], int]:
    """Text lines in the frames (sampled; every frame once one has text), each with the index of
    the frame it was found in, and the number of frames read."""
    slope, intercept = assessment.rescale
    first, rest = _frame_order(frames.shape[0])
    found: list[tuple[int, ocr.TextBox]] = []
    read = 0
    for batch in (first, rest):
        if batch is rest and not found:
            break
        for i in batch:
            frame = frames[i]
            values = frame * slope + intercept if (slope, intercept) != (1.0, 0.0) and frame.ndim == 2 else frame
            found += [
                (i, line) for line in finder(ocr.display_frame(values, assessment.window if frame.ndim == 2 else None))
            ]
            read += 1
    return found, read


STATIC_SHARE = 0.9  # of a box's pixels unchanged (within STATIC_TOLERANCE) between two frames: one overlay
STATIC_TOLERANCE = 2  # grey levels (stored values): an overlay is drawn the same in every frame
SAME_PLACE = 0.5  # overlap (intersection over union) of two frames' boxes: the same line
RECURRING = 0.5  # of the frames read: a line found at the same place in this many is an overlay


def _overlap(a: Box, b: Box) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def _static(frames: np.ndarray, box: Box, i: int, j: int) -> bool:
    x0, y0, x1, y1 = box
    a = frames[i, y0:y1, x0:x1].astype(np.int32)
    b = frames[j, y0:y1, x0:x1].astype(np.int32)
    if a.size == 0:
        return False
    same = np.abs(a - b) <= STATIC_TOLERANCE
    if same.ndim == 3:  # colour: every sample the same
        same = same.all(axis=-1)
    return float(same.mean()) >= STATIC_SHARE


def frame_boxes(frames: np.ndarray, found: list[tuple[int, Box]], read: int) -> tuple[list[Box], dict[int, list[Box]]]:
    """Which frames each padded line found is masked in: (boxes for every frame, boxes per frame).

    A line is an overlay, masked in every frame, when its pixels are the same in another frame (an
    overlay drawn on a still ground, :data:`STATIC_SHARE`), or when it is found at the same place
    (:data:`SAME_PLACE`) in two frames or more and in at least :data:`RECURRING` of the ``read``
    frames (an overlay on a moving ground, found wherever OCR reads it). A line found otherwise,
    on a ground that moves, is masked in the frames it was found in only: speckle read as text in
    one frame recurs by chance in a few neighbouring frames of a cine loop (deid-data's
    ultrasound-multiframe.dcm: 2 to 7 of 30), and the union of those boxes masked a third of it.
    """
    frames_of: dict[Box, set[int]] = {}
    for i, box in found:
        frames_of.setdefault(box, set()).add(i)
    every: list[Box] = []
    single: dict[int, list[Box]] = {}
    for box, own in frames_of.items():
        seen = set(own)
        for other, theirs in frames_of.items():
            if other != box and _overlap(box, other) >= SAME_PLACE:
                seen |= theirs
        i = min(own)
        recurring = len(seen) >= max(2, RECURRING * read)
        if recurring or any(_static(frames, box, i, j) for j in range(frames.shape[0]) if j != i):
            every.append(box)
        else:
            for j in own:
                single.setdefault(j, []).append(box)
    return every, single


def _masked_fraction(shape: tuple[int, ...], boxes: list[Box], per_frame: dict[int, list[Box]] | None = None) -> float:
    """The share of a frame's area masked (the frame masked most, where boxes differ by frame)."""
    area = np.zeros(shape[1:3], dtype=bool)
    for x0, y0, x1, y1 in boxes:
        area[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    if not area.size:
        return 0.0
    most = float(area.mean())
    for extra in (per_frame or {}).values():
        frame = area.copy()
        for x0, y0, x1, y1 in extra:
            frame[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
        most = max(most, float(frame.mean()))
    return most


def decide(
    ds: Dataset,
    pixels: DecodedPixels,
    policy: PixelPolicy | str,
    assessment: PixelAssessment | None = None,
    every_instance: bool = False,
) -> PixelDecision:
    """What the lake stores of a decoded instance's pixels, and the verdict (see the module doc).

    ``every_instance``: read this instance even where its series is sampled (another instance of
    the series had text)."""
    policy = PixelPolicy(policy)
    assessment = assessment or assess(ds)
    sampled_in = every_instance or in_series_sample(ds, assessment)
    decision = _decide(pixels, policy, assessment, sampled_in)
    readable = policy in (PixelPolicy.MASK, PixelPolicy.MASK_OR_QUARANTINE) and assessment.undecidable is None
    if not assessment.sampled or every_instance or not readable or pixels.frames is None or text_finder() is None:
        return decision  # sampling played no part
    text = decision.phi.method.startswith("ocr") and decision.phi.reason in ("text_found", "identifier_in_text")
    return replace(decision, sample=SeriesSample(sampled_in, text))


def _decide(pixels: DecodedPixels, policy: PixelPolicy, assessment: PixelAssessment, sampled_in: bool) -> PixelDecision:
    reason = assessment.reason
    if pixels.frames is None:
        return PixelDecision(None, pixels.status, pixels.reason, PixelPhi("none", pixels.status))
    frames = pixels.frames
    if reason is None:
        return PixelDecision(frames, "stored", None, PixelPhi("none", "not_at_risk"))
    if policy is PixelPolicy.KEEP_FLAGGED:
        return PixelDecision(frames, "stored", f"flagged:{reason}", PixelPhi("policy", "kept_flagged"))
    if policy is PixelPolicy.QUARANTINE:
        return PixelDecision(None, "quarantined", reason, PixelPhi("policy", "quarantine_policy"))
    rule, rule_boxes = assessment.found or ("", [])
    if assessment.undecidable is not None:
        why = assessment.undecidable
        if policy is PixelPolicy.MASK:
            masked = mask_regions(frames, rule_boxes) if rule_boxes else frames
            fraction = _masked_fraction(frames.shape, rule_boxes)
            phi = PixelPhi("rules" if rule_boxes else "none", why, len(rule_boxes), fraction)
            return PixelDecision(masked, "stored", f"unmasked_undecidable:{why}", phi)
        return PixelDecision(None, "quarantined", f"{why}:{reason}", PixelPhi("none", why))
    finder = text_finder()
    if finder is None or not sampled_in:
        why = "ocr_unavailable" if finder is None else "series_sampled"
        if rule_boxes:
            phi = PixelPhi("rules", f"rule_region:{why}", len(rule_boxes), _masked_fraction(frames.shape, rule_boxes))
            return PixelDecision(mask_regions(frames, rule_boxes), "stored", f"masked:{rule}", phi)
        if why == "series_sampled":  # stored as read clean unless another instance of the series has text
            return PixelDecision(frames, "stored", None, PixelPhi("ocr", "series_sampled_clean"))
        if policy is PixelPolicy.MASK:
            return PixelDecision(frames, "stored", f"unmasked_no_rule:{reason}", PixelPhi("none", why))
        return PixelDecision(None, "quarantined", reason, PixelPhi("none", why))
    try:
        lines, read = read_text(frames, assessment, finder)
    except Exception as exc:  # Tesseract failing on one image must not end the run: undecided
        caught = diagnostics.current()
        if caught is not None:
            caught.note("ocr:failed", repr(exc))  # the vault's run log only
        if policy is PixelPolicy.MASK:
            return PixelDecision(frames, "stored", f"unmasked_ocr_failed:{reason}", PixelPhi("ocr", "ocr_failed"))
        return PixelDecision(None, "quarantined", f"ocr_failed:{reason}", PixelPhi("ocr", "ocr_failed"))
    rows, cols = frames.shape[1], frames.shape[2]
    every, single = frame_boxes(frames, [(i, ocr.pad(line.box, rows, cols)) for i, line in lines], read)
    text_boxes = every + [box for extra in single.values() for box in extra]
    boxes = rule_boxes + every
    method = "ocr+rules" if rule_boxes else "ocr"
    if not boxes and not single:
        return PixelDecision(frames, "stored", None, PixelPhi(method, "no_text_found", frames_read=read))
    named = {ocr_key(line.text) for _i, line in lines}
    matches = any(i in t for t in named for i in assessment.identifiers)
    why = "identifier_in_text" if matches else ("text_found" if text_boxes else "rule_region")
    label = "+".join(x for x in ("ocr" if text_boxes else "", rule) if x)
    count = len(rule_boxes) + len(text_boxes)
    phi = PixelPhi(method, why, count, _masked_fraction(frames.shape, boxes, single), read)
    masked = mask_frame_regions(mask_regions(frames, boxes), single)
    return PixelDecision(masked, "stored", f"masked:{label}", phi)


def apply_pixel_policy(
    ds: Dataset, pixels: DecodedPixels, policy: PixelPolicy | str, assessment: PixelAssessment | None = None
) -> tuple[np.ndarray | None, str, str | None]:
    """(frames to store or None, pixel_status, pixel_reason) of :func:`decide`."""
    decision = decide(ds, pixels, policy, assessment)
    return decision.frames, decision.status, decision.reason
