"""IHE IOCM rejection notes: Key Object Selection documents that withdraw instances from the archive.

A rejection note is a KOS (SOP class ``1.2.840.10008.5.1.4.1.1.88.59``) whose document title
(ConceptNameCodeSequence) is one of CID 7011's rejection codes, scheme DCM. It lists the rejected
instances in CurrentRequestedProcedureEvidenceSequence (study > series > SOP). The profile removes
that sequence from the de-identified copy, so the note is read here from the input bytes, in the
main process, and its references are keyed exactly as the de-identifier keys UIDs
(:meth:`lake.deid.engine.Deidentifier.map_uid`). The note itself is never stored as an image.

Only files whose first :data:`SNIFF_BYTES` bytes name the KOS class are parsed (file meta and the
SOP Class UID come first): for every other file this costs one search of 4 KB.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pydicom
from pydicom.uid import UID_dictionary

from lake.keys import LakeKey

KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
#: CID 7011 "Rejected for Quality Reasons" and the other rejection titles (scheme DCM).
REJECTION_CODES = {
    "113001": "Rejected for Quality Reasons",
    "113037": "Rejected for Patient Safety Reasons",
    "113038": "Incorrect Modality Worklist Entry",
    "113039": "Data Retention Policy Expired",
}
SNIFF_BYTES = 4096
_DICOM_ROOT = "1.2.840.10008."


@dataclass(frozen=True)
class RejectionNote:
    """A rejection note's code and the keyed SOP Instance UIDs it rejects (as the lake stores them)."""

    code: str
    sop_uids: frozenset[str]


def keyed_uid(uid: str, key: LakeKey, retain_uids: bool) -> str:
    """The lake's UID for an original UID: the de-identifier's mapping (kept under Retain UIDs)."""
    uid = uid.strip().rstrip("\x00")
    if retain_uids or not uid or uid in UID_dictionary or uid.startswith(_DICOM_ROOT):
        return uid
    return key.uid(uid)


def read_note(data: bytes, key: LakeKey, retain_uids: bool) -> RejectionNote | None:
    """The rejection note in ``data``, or None for any other file (a KOS with another title included).

    Never raises for a bad file: a file that cannot be read as a note is left to the normal path,
    which rejects it with its reason.
    """
    if KOS_CLASS.encode() not in data[:SNIFF_BYTES]:
        return None
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        if str(ds.get("SOPClassUID", "")) != KOS_CLASS:
            return None
        title = ds.get("ConceptNameCodeSequence") or []
        if not title:
            return None
        code = str(title[0].get("CodeValue", "")).strip()
        scheme = str(title[0].get("CodingSchemeDesignator", "")).strip()
        if scheme != "DCM" or code not in REJECTION_CODES:
            return None
        uids = {
            keyed_uid(str(sop.ReferencedSOPInstanceUID), key, retain_uids)
            for study in ds.get("CurrentRequestedProcedureEvidenceSequence") or []
            for series in study.get("ReferencedSeriesSequence") or []
            for sop in series.get("ReferencedSOPSequence") or []
            if str(sop.get("ReferencedSOPInstanceUID", "") or "").strip()
        }
    except Exception:  # a broken KOS: the normal path parses it again and rejects it
        return None
    return RejectionNote(code, frozenset(uids))
