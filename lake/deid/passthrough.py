"""The ``pass-through`` profile: already de-identified data kept as it is, still audited for PHI.

A lake made with ``lake init LAKE --profile pass-through`` holds data that was de-identified
before it arrived: a teaching set another lake exported (``lake export teaching``), a public
collection (TCIA, IDC). Making new pseudonyms or shifting dates again would break what the data is
known by (its published UIDs and patient IDs, the dates of the collection), so this profile keeps
every value (UIDs, PatientID, dates, descriptors, private elements) and instead checks that the
file may come in:

1. **The de-identification marks** (PS3.15 E.1.1, PS3.3 C.12.1): ``PatientIdentityRemoved`` is
   ``YES`` and ``DeidentificationMethod`` or ``DeidentificationMethodCodeSequence`` says how.
   A file without them is rejected (``no_patient_identity_removed``, ``no_deidentification_method``),
   as is one without a Patient ID (``no_patient_id``: the profile makes no pseudonyms, and the lake
   never holds a patient without one).
2. **No PHI patterns in any text value**: every value of a text VR (LO, SH, ST, LT, UT, UC, PN,
   AE, UR, CS), at every sequence depth, private elements included, and any UN or undecoded
   payload that reads as text, is searched for phone numbers, e-mail addresses and labelled
   identifiers (``MRN 448100``, ``Patient ID: 4711``) as the research profile's cleaner finds them
   (:mod:`lake.deid.clean`), and SSNs (as :mod:`lake.audit.patterns` finds them, and also at the
   end of a sentence). A hit rejects the file (``phi_phone``, ``phi_email``,
   ``phi_labelled_identifier``, ``phi_ssn``), counted by reason like every rejection; the vault's
   run log names the attribute path, never the value.

Rejecting rather than flagging: a pass-through lake changes nothing, so a flagged file would put
the value into the lake's tables (``header_json``, promoted columns) and statistics, where
``lake audit-phi`` would then find it; a rejected one stays in its source for a person to fix.
Dates and long digit runs are not searched for: the data's own (already shifted) dates and numeric
pseudonyms are what it legitimately holds. The burned-in pixel policy applies as in any lake.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, NoReturn

from pydicom import Dataset
from pydicom.datadict import keyword_for_tag
from pydicom.multival import MultiValue

from lake.deid.clean import EMAIL_PATTERN, LABELLED_ID_PATTERN, PHONE_PATTERNS
from lake.deid.engine import DeidResult
from lake.deid.identity import PatientIdentifier
from lake.deid.profile import ProfileName
from lake.errors import ConfigError, RecipeError, RejectedInput
from lake.keys import LakeKey

if TYPE_CHECKING:
    from lake.config import DeidSettings, LakePaths

STAGE = "deidentify"
#: VRs whose values are audited as text (UI, dates, times and numbers are not text)
AUDITED_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "SQ"})
#: the reasons a file is rejected, and what each means (reject reason codes, no values)
REASONS = {
    "no_patient_identity_removed": "PatientIdentityRemoved is not YES: the file does not say it is de-identified",
    "no_deidentification_method": "neither DeidentificationMethod nor DeidentificationMethodCodeSequence says how",
    "no_patient_id": "no Patient ID: the pass-through profile makes no pseudonyms",
    "phi_phone": "a text value holds a phone number",
    "phi_email": "a text value holds an e-mail address",
    "phi_labelled_identifier": "a text value holds an identifier after its label (MRN, Patient ID, accession...)",
    "phi_ssn": "a text value holds a social security number",
}


#: ``lake.audit.patterns``' SSN, also at the end of a sentence (``... SSN 123-45-6789.``)
_SSN = r"(?<![\d.-])\d{3}-\d{2}-\d{4}(?![\d-]|\.\d)"


@lru_cache(maxsize=1)
def _patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    return (
        ("phi_email", re.compile(EMAIL_PATTERN, re.IGNORECASE)),
        ("phi_ssn", re.compile(_SSN)),
        ("phi_phone", re.compile("|".join(f"(?:{p})" for p in PHONE_PATTERNS), re.IGNORECASE)),
        ("phi_labelled_identifier", re.compile(LABELLED_ID_PATTERN, re.IGNORECASE)),
    )


def phi_in(text: str) -> str | None:
    """The reason code of the first PHI pattern found in ``text`` (``phi_phone``...), or None."""
    for reason, pattern in _patterns():
        if pattern.search(text):
            return reason
    return None


def _as_text(raw: bytes) -> str | None:
    """A binary payload as text when every character is printable Latin-1, else None."""
    body = raw.rstrip(b"\x00 ")
    if not body:
        return None
    text = body.decode("latin-1")
    return text if all(c.isprintable() or c in "\r\n\t" for c in text) else None


def text_values(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(attribute path, text) of every text value of ``ds`` at every depth (``A[0].B`` paths by keyword)."""
    for elem in ds:
        name = keyword_for_tag(elem.tag) or f"({elem.tag.group:04X},{elem.tag.element:04X})"
        value = elem.value
        if elem.VR == "SQ":
            for i, item in enumerate(value or ()):
                yield from text_values(item, f"{prefix}{name}[{i}].")
        elif isinstance(value, bytes | bytearray):
            if elem.VR not in _BINARY_VRS and (text := _as_text(bytes(value))) is not None:
                yield prefix + name, text
        elif elem.VR in AUDITED_VRS and value not in (None, ""):
            for v in value if isinstance(value, MultiValue | list) else [value]:
                if v not in (None, ""):
                    yield prefix + name, str(v)


def _marks(ds: Dataset) -> str | None:
    """The reason code when the de-identification marks are missing, else None."""
    if str(ds.get("PatientIdentityRemoved", "") or "").strip().upper() != "YES":
        return "no_patient_identity_removed"
    method = ds.get("DeidentificationMethod")  # by keyword: the value
    if not str(method or "").strip() and not ds.get("DeidentificationMethodCodeSequence"):
        return "no_deidentification_method"
    if not str(ds.get("PatientID", "") or "").strip():
        return "no_patient_id"
    return None


class PassThrough:
    """The ``pass-through`` profile, with the interface of :class:`lake.deid.engine.Deidentifier`.

    :meth:`deidentify` leaves the dataset as it is, or raises :class:`RejectedInput` (stage
    ``deidentify``, a :data:`REASONS` code; the detail, for the vault only, names the attribute
    path, never the value). The pseudonym is the file's own PatientID; the identity facts are keyed
    digests as in a research lake, so the vault's identity ledger still counts anomalies (the
    identity crosswalk does not apply: nothing is re-keyed).
    """

    def __init__(self, key: LakeKey, identifier: PatientIdentifier | None = None) -> None:
        self.key = key
        self.identifier = identifier or PatientIdentifier()

    def deidentify(self, ds: Dataset) -> DeidResult:
        missing = _marks(ds)
        if missing is not None:
            raise RejectedInput(STAGE, missing)
        audited = 0
        for path, text in text_values(ds):
            audited += 1
            reason = phi_in(text)
            if reason is not None:
                raise RejectedInput(STAGE, reason, f"in {path}")
        patient_id = str(ds.PatientID).strip()
        member = self.identifier.member(ds)
        counts: Counter[tuple[str, str]] = Counter({("header", "kept_pass_through"): 1})
        counts[("text", "audited_pass_through")] = audited
        return DeidResult(
            dataset=ds,
            patient_pseudonym=patient_id,
            patient_key=member.key,
            day_offset=0,
            original_patient_id=patient_id,
            counts=+counts,
            identity=self.identifier.facts(self.key, ds, member),
        )


def refuse_recipe() -> NoReturn:
    """A pass-through lake takes no site recipe: raises :class:`RecipeError`."""
    raise RecipeError(
        "a pass-through lake keeps already de-identified files as they are and takes no --recipe: "
        "ingest without it, or into a research lake (lake init NEW without --profile pass-through)"
    )


def recorded_profiles(paths: LakePaths) -> set[str]:
    """The profiles the lake's earlier ingests ran with, from their ``runs`` rows (``profile`` in
    the parameters; a row without it is from before the setting existed: ``research``)."""
    import pyarrow.dataset as pads

    from lake.catalog.tables import snapshot_files

    files = snapshot_files(paths.table("runs"))
    if not files:
        return set()
    table = pads.dataset(files, format="parquet").to_table(columns=["operation", "parameters"])
    found: set[str] = set()
    for operation, parameters in zip(table["operation"].to_pylist(), table["parameters"].to_pylist(), strict=True):
        if operation != "ingest":
            continue
        try:
            recorded = json.loads(parameters or "{}").get("profile", ProfileName.RESEARCH.value)
        except (json.JSONDecodeError, AttributeError):
            continue
        found.add(str(recorded))
    return found


def check_profile_unchanged(paths: LakePaths, settings: DeidSettings) -> None:
    """Refuse an ingest into a lake whose ``deid.profile`` differs from the one its data came in with.

    A lake's profile is chosen at ``lake init`` and fixed: turning a research lake into a
    pass-through one would admit files with their original UIDs and IDs beside keyed ones, and the
    reverse would re-key data that is known by its published identifiers. Raises :class:`ConfigError`.
    """
    others = recorded_profiles(paths) - {settings.profile}
    if others:
        raise ConfigError(
            f"the lake {paths.root} has the profile {settings.profile} in lake.json (deid.profile), but its data was "
            f"ingested with the {', '.join(sorted(others))} profile: a lake's profile is fixed at `lake init`. "
            f"Restore deid.profile in lake.json, or build a new lake with `lake init NEW --profile {settings.profile}` "
            "and ingest the sources into it"
        )
