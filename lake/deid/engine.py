"""De-identification of one pydicom Dataset to PS3.15 Annex E, with keyed, consistent replacements.

Why not the ``deid`` package's header engine: it re-parses recipes per file, builds a flat field
index of the whole dataset first and walks nested sequences only in some code paths; on the same
files it is about 50x slower than a pydicom read (``benchmarks/ingest.py`` measures it). This
engine makes one pass over the elements with an O(1) action lookup per tag; ``deid`` still parses
site recipes (``lake.deid.recipe``) and supplies the burned-in pixel rules.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pydicom import Dataset
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_has_tag, get_entry, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from lake.deid.attribute_types import concrete_action
from lake.deid.clean import TextCleaner, date_forms
from lake.deid.dates import shift_da, shift_dt
from lake.deid.identity import IdentityFacts, PatientIdentifier, PatientRef
from lake.deid.profile import Action, LakeOption, Profile, ProfileOption
from lake.deid.recipe import Recipe, RecipeApplier
from lake.deid.text_dates import TextDateCleaner, collapse_ages  # issue 12: dates and ages in free text
from lake.keys import LakeKey

logger = logging.getLogger(__name__)

METHOD = "lake PS3.15 E.1-1 de-identification"
DICOM_ROOT = "1.2.840.10008."
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "AE", "CS"})
FREE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UC"})
_PATIENT_ID = 0x00100020
_PATIENT_NAME = 0x00100010
_IDENTITY_TAGS = {
    0x00100010: "PatientName",
    0x00101001: "OtherPatientNames",
    0x00101005: "PatientBirthName",
    0x00101060: "PatientMotherBirthName",
    0x00080090: "ReferringPhysicianName",
    0x00081050: "PerformingPhysicianName",
    0x00081060: "NameOfPhysiciansReadingStudy",
    0x00081070: "OperatorsName",
    0x00081048: "PhysiciansOfRecord",
    0x00100020: "PatientID",
    0x00101000: "OtherPatientIDs",
    0x00080050: "AccessionNumber",
    0x00200010: "StudyID",
    0x00101040: "PatientAddress",
    0x00102154: "PatientTelephoneNumbers",
    0x00101090: "MedicalRecordLocator",
    0x00080080: "InstitutionName",
    0x00080081: "InstitutionAddress",
    0x00380010: "AdmissionID",
    0x00401001: "RequestedProcedureID",
    0x00080092: "ReferringPhysicianAddress",
    0x00080094: "ReferringPhysicianTelephoneNumbers",
    0x00081040: "InstitutionalDepartmentName",
    0x00321032: "RequestingPhysician",
    0x00321033: "RequestingService",
    0x00400006: "ScheduledPerformingPhysicianName",
    0x00102152: "RegionOfResidence",
    0x00380400: "PatientInstitutionResidence",
    0x00102180: "Occupation",
    0x0040A123: "PersonName",
}
_NAME_LIKE = re.compile(r"[^\W\d_][\w\s'.,^=-]*", re.UNICODE)
_HONORIFICS = frozenset({"dr", "md", "phd", "mr", "mrs", "ms", "miss", "prof", "jr", "sr", "ii", "iii", "iv", "rn"})
_STREET_WORDS = frozenset(
    {"lane", "road", "street", "avenue", "drive", "court", "place", "suite", "floor", "north", "south", "east"}
    | {"west", "apartment", "building"}
)
_ADDRESS_TAGS = frozenset({0x00101040, 0x00080081, 0x00080092, 0x00321033})
_DATE_IDENTIFIERS = (0x00100030, 0x00080020, 0x00080021, 0x00080022, 0x00080023)

DUMMIES: dict[str, object] = {
    "AE": "ANON",
    "AS": "000Y",
    "CS": "ANON",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "UR": "urn:x-lake:removed",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
}


def _name_parts(pn: str) -> list[str]:
    """Components and words of a person name, to be removed wherever else they are written.

    Words are taken only from values that look like names (letters, spaces, ``-'.,``), without
    honorifics, so that junk in a PN element ("X; CT HEAD") does not make "HEAD" an identifier
    and over-clean technical values.
    """
    components = [c.strip() for c in pn.replace("=", "^").split("^")[:5] if c.strip()]
    words: list[str] = []
    if _NAME_LIKE.fullmatch(pn):
        words = [w.strip(".,") for c in components for w in c.split()]
        words = [w for w in words if len(w) >= 2 and w.lower() not in _HONORIFICS]
    return components + words


def _known(tag: BaseTag) -> bool:
    """In the data dictionary, including repeating groups such as (60xx,0010)."""
    if dictionary_has_tag(tag):
        return True
    try:
        get_entry(tag)
    except KeyError:
        return False
    return True


@dataclass(frozen=True)
class PrivateRule:
    """One safelisted private element: creator string and element byte (``xx`` of ``gggg,xxee``)."""

    group: int
    creator: str
    element: int  # the low byte, 0x00-0xFF


@dataclass
class DeidResult:
    dataset: Dataset
    patient_pseudonym: str
    patient_key: str
    day_offset: int
    original_patient_id: str
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    identity: IdentityFacts | None = None  # keyed digests for the vault's identity ledger


class Deidentifier:
    """Applies a resolved :class:`Profile` with keyed pseudonyms, UIDs and per-patient date shifts."""

    def __init__(
        self,
        key: LakeKey,
        profile: Profile | None = None,
        date_offset_days: tuple[int, int] = (30, 1095),
        private_safelist: Iterable[PrivateRule] | None = None,
        post_processors: Iterable[Callable[[Dataset, DeidResult], None]] = (),
        recipe: Recipe | None = None,
        identifier: PatientIdentifier | None = None,
    ) -> None:
        self.key = key
        self.identifier = identifier or PatientIdentifier()
        self.profile = profile or Profile()
        self.date_offset_days = date_offset_days
        if private_safelist is None:  # the project's safelist (schemas/deid/private-safelist.toml)
            from lake.deid.private import load_safelist

            private_safelist = load_safelist()
        self._safe_private = {(r.group, r.creator.strip().upper(), r.element): r for r in private_safelist}
        self._post = list(post_processors)
        self.recipe = recipe
        self._recipe = RecipeApplier(recipe, self.profile) if recipe is not None else None
        opts = self.profile.options
        self.full_dates = ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES in opts
        self.modified_dates = ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in opts
        self.retain_uids = ProfileOption.RETAIN_UIDS in opts
        self.retain_private = self.profile.private_action != Action.REMOVE
        self.hipaa_ages = LakeOption.HIPAA_SAFE_HARBOR_AGES in self.profile.lake_options  # issue 12

    # -- identity ------------------------------------------------------------------------------
    def patient_identity(self, ds: Dataset) -> tuple[PatientRef, PatientRef]:
        """(member, ref): the dataset's own identity under the lake's setting, and the identity that
        keys its pseudonym and date offset (the crosswalk group's canonical member, else the member).

        Without a Patient ID the study is its own patient (:mod:`lake.deid.identity`): its instances
        still link together, and nothing is merged on a guess.
        """
        member = self.identifier.member(ds)
        return member, self.identifier.resolve(member)

    def _identifiers(self, ds: Dataset) -> list[str]:
        found: list[str] = []
        for tag in _IDENTITY_TAGS:
            elem = ds.get(tag)
            if elem is None or elem.value in (None, ""):
                continue
            values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
            for v in values:
                text = str(v)
                found.append(text)
                if elem.VR == "PN":
                    found.extend(_name_parts(text))
                elif tag in _ADDRESS_TAGS:
                    # addresses are written in pieces elsewhere ("12 Imaginary Lane", "Nowhere")
                    parts = [p.strip() for p in re.split(r"[,^\n;]", text) if len(p.strip()) >= 4]
                    # single words only when long and alphabetic: place names, not "HEAD" or "12"
                    words = {
                        w
                        for p in parts
                        for w in p.split()
                        if len(w) >= 5 and w.isalpha() and w.lower() not in _STREET_WORDS
                    }
                    found.extend([*parts, *words])
        for tag in _DATE_IDENTIFIERS:
            value = ds.get(tag)
            if value is not None and isinstance(value.value, str):
                found.extend(date_forms(value.value))
        return [f for f in found if f and f.strip()]

    # -- main entry -----------------------------------------------------------------------------
    def deidentify(self, ds: Dataset) -> DeidResult:
        """De-identify ``ds`` in place and return it with what was done (counts carry no values)."""
        member, ref = self.patient_identity(ds)
        low, high = self.date_offset_days
        result = DeidResult(
            dataset=ds,
            patient_pseudonym=ref.pseudonym(self.key),
            patient_key=ref.key,
            day_offset=ref.day_offset(self.key, low, high),
            original_patient_id=member.patient_id or "study:" + member.study,
            identity=self.identifier.facts(self.key, ds, member),
        )
        cleaner = TextCleaner(self._identifiers(ds))
        # issue 12 (text dates): dates written in text shift by the patient's offset (or are removed)
        days = result.day_offset if self.modified_dates else None
        cleaner = TextDateCleaner.for_dataset(cleaner, ds, days, self.hipaa_ages)
        self._walk(ds, result, cleaner, cleaning=False)
        if "PatientID" not in ds:  # a study without one is its own patient, never a NULL one
            ds.PatientID = result.patient_pseudonym
        self._file_meta(ds)
        if self._recipe is not None:
            self._recipe.apply(ds, result.counts)
        self._mark(ds, result)
        for post in self._post:
            post(ds, result)
        if self.hipaa_ages and (n := collapse_ages(ds)):  # issue 12: Age Strings over 89 become 090Y
            result.counts[("AS", "age-90-or-older")] += n
        return result

    # -- walking --------------------------------------------------------------------------------
    def _walk(self, ds: Dataset, result: DeidResult, cleaner: TextCleaner, cleaning: bool) -> None:
        # Creators are read first: they are removed as the walk meets them, before their elements.
        tags = list(ds.keys())  # a Dataset iterates its elements; keys() gives tags without converting raw values
        creators = {int(t): str(ds[t].value or "") for t in tags if t.is_private and t.is_private_creator}
        for tag in tags:
            elem = ds[tag]
            if tag.is_private:
                self._private(ds, elem, result, cleaner, creators)
                continue
            if tag.element == 0x0000:  # group lengths are retired and would be wrong after edits
                del ds[tag]
                continue
            action = self.profile.action_for(int(tag))
            if action is None:
                self._unlisted(ds, elem, result, cleaner, cleaning)
            else:
                self._apply(ds, elem, action, result, cleaner, cleaning)

    def _count(self, result: DeidResult, tag: BaseTag, what: str) -> None:
        name = keyword_for_tag(tag) or ("private" if tag.is_private else f"({tag.group:04X},{tag.element:04X})")
        result.counts[(name, what)] += 1

    def _apply(
        self, ds: Dataset, elem: DataElement, action: Action, result: DeidResult, cleaner: TextCleaner, cleaning: bool
    ) -> None:
        tag = elem.tag
        if int(tag) == _PATIENT_ID or int(tag) == _PATIENT_NAME:
            elem.value = result.patient_pseudonym
            self._count(result, tag, "pseudonym")
            return
        # Combined actions resolve to X, Z or D by the attribute's type in the IOD (top level).
        action = concrete_action(action, int(tag), result.dataset)
        if action is Action.REMOVE:
            del ds[tag]
        elif action is Action.ZERO:
            self._zero(elem)
        elif action is Action.DUMMY:
            self._dummy(ds, elem, result)
        elif action is Action.UID:
            self._remap_uid(elem)
        elif action is Action.REMOVE_OR_ZERO_OR_UID:
            # Sequences of references (Referenced Image, Source Image): keep them and replace the
            # UIDs inside consistently, so derived objects still point at their images.
            if elem.VR == "SQ":
                for item in elem.value:
                    self._walk(item, result, cleaner, cleaning)
            else:
                self._remap_uid(elem)
        elif action is Action.KEEP:
            if elem.VR == "SQ":
                for item in elem.value:
                    self._walk(item, result, cleaner, cleaning)
            elif elem.VR in TEXT_VRS and elem.value not in (None, ""):
                # K keeps the value, but never this patient's own name or IDs written into it
                values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
                out = [cleaner.remove_known(str(v)) for v in values]
                elem.value = out if len(out) > 1 else out[0]
        elif action is Action.CLEAN:
            self._clean(ds, elem, result, cleaner)
        self._count(result, tag, action.value)

    def _zero(self, elem: DataElement) -> None:
        elem.value = Sequence() if elem.VR == "SQ" else (b"" if elem.VR in ("OB", "OW", "UN") else "")
        if elem.VR in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
            elem.value = None

    def _dummy(self, ds: Dataset, elem: DataElement, result: DeidResult) -> None:
        """D: a non-empty value valid for the VR that carries no information.

        UIDs are remapped (a dummy UID would break references); dates in modified-dates lakes are
        the shifted original (consistent with the patient's other dates); sequences are emptied,
        as a dummy item could not be made valid for every IOD without inventing content.
        """
        vr = elem.VR
        if vr == "SQ":
            elem.value = Sequence()
        elif vr == "UI":
            self._remap_uid(elem)
        elif vr in ("DA", "DT") and self.modified_dates and elem.value:
            self._shift(ds, elem, result)
        else:
            elem.value = DUMMIES.get(vr, b"\x00\x00" if vr in ("OB", "OW", "UN") else "")

    def _clean(self, ds: Dataset, elem: DataElement, result: DeidResult, cleaner: TextCleaner) -> None:
        vr = elem.VR
        if vr == "SQ":
            for item in elem.value:
                self._walk(item, result, cleaner, cleaning=True)
        elif vr in ("DA", "DT"):
            self._date(ds, elem, result)
        elif vr == "TM":
            return  # a whole-day shift leaves the time of day as it was
        elif vr in TEXT_VRS:
            self._clean_text(elem, cleaner, generic=True)
        elif vr == "PN":
            self._zero(elem)
        elif vr == "UI":
            self._remap_uid(elem)

    def _date(self, ds: Dataset, elem: DataElement, result: DeidResult) -> None:
        """A date or date-time under the lake's temporal option: kept, shifted, or removed."""
        if self.full_dates:
            return
        if self.modified_dates:
            self._shift(ds, elem, result)
        else:
            del ds[elem.tag]

    def _unlisted(
        self, ds: Dataset, elem: DataElement, result: DeidResult, cleaner: TextCleaner, cleaning: bool
    ) -> None:
        """Attributes Table E.1-1 does not name: kept, but made safe by VR."""
        vr = elem.VR
        tag = elem.tag
        if not _known(tag):
            del ds[tag]  # an unknown public attribute can hold anything
            self._count(result, tag, "X-unknown")
        elif vr == "SQ":
            for item in elem.value:
                self._walk(item, result, cleaner, cleaning)
        elif vr in ("DA", "DT"):
            self._date(ds, elem, result)
            self._count(result, tag, "date")
        elif vr == "PN":
            self._zero(elem)
            self._count(result, tag, "Z-name")
        elif vr == "UI":
            self._remap_uid(elem)
        elif vr in TEXT_VRS and elem.value not in (None, ""):
            self._clean_text(elem, cleaner, generic=cleaning or vr in FREE_TEXT_VRS)

    def _private(
        self, ds: Dataset, elem: DataElement, result: DeidResult, cleaner: TextCleaner, creators: dict[int, str]
    ) -> None:
        """Kept only when safelisted and its value is what the slot is for (``lake.deid.private.vet``)."""
        from lake.deid.private import vet

        tag = elem.tag
        creator_tag = BaseTag((tag.group << 16) | (tag.element >> 8))
        creator_value = creators.get(int(creator_tag), "")
        rule = None
        if self.retain_private and not tag.is_private_creator and creator_value:
            rule = self._safe_private.get((tag.group, creator_value.strip().upper(), tag.element & 0xFF))
        if rule is None:  # creators are re-added below for any kept element of their block
            del ds[tag]
            self._count(result, tag, "X")
            return
        kept = vet(elem, rule, cleaner, result.counts)
        if isinstance(kept, str):
            del ds[tag]
            self._count(result, tag, kept)
            return
        if kept is not elem:
            ds[tag] = kept
        if creator_tag not in ds:
            ds.add_new(creator_tag, "LO", creator_value)
        self._count(result, tag, "K-safe-private")

    # -- value transforms -----------------------------------------------------------------------
    def _shift(self, ds: Dataset, elem: DataElement, result: DeidResult) -> None:
        fn = shift_da if elem.VR == "DA" else shift_dt
        values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
        out: list[str] = []
        for v in values:
            if v in (None, ""):
                continue
            shifted = fn(str(v), result.day_offset)
            if shifted is None:
                del ds[elem.tag]  # a date that cannot be shifted is not kept as it was
                self._count(result, elem.tag, "X-unshiftable-date")
                return
            out.append(shifted)
        elem.value = out if len(out) > 1 else (out[0] if out else "")

    def _remap_uid(self, elem: DataElement) -> None:
        if self.retain_uids:
            return
        values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
        mapped = [self.map_uid(str(v)) for v in values if v not in (None, "")]
        elem.value = mapped if len(mapped) > 1 else (mapped[0] if mapped else "")

    def map_uid(self, uid: str) -> str:
        """Keyed UID for an instance UID; registered DICOM UIDs (SOP classes, syntaxes) are kept."""
        uid = uid.strip().rstrip("\x00")
        # The DICOM root holds only standard UIDs (classes, syntaxes, well-known frames of reference),
        # including ones newer than pydicom's dictionary.
        if not uid or uid in UID_dictionary or uid.startswith(DICOM_ROOT):
            return uid
        return self.key.uid(uid)

    def _clean_text(self, elem: DataElement, cleaner: TextCleaner, generic: bool) -> None:
        values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
        if generic:
            out = [cleaner.clean(str(v)) for v in values]
        else:
            out = [cleaner.clean(str(v)) if cleaner.contains_identifier(str(v)) else str(v) for v in values]
        elem.value = out if len(out) > 1 else (out[0] if out else "")

    # -- markers --------------------------------------------------------------------------------
    def _file_meta(self, ds: Dataset) -> None:
        meta = getattr(ds, "file_meta", None)
        if meta is None:
            return
        for keyword in (
            "SourceApplicationEntityTitle",
            "SendingApplicationEntityTitle",
            "ReceivingApplicationEntityTitle",
            "PrivateInformationCreatorUID",
            "PrivateInformation",
        ):
            if keyword in meta:
                delattr(meta, keyword)
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        elif "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = self.map_uid(str(meta.MediaStorageSOPInstanceUID))

    def _mark(self, ds: Dataset, result: DeidResult) -> None:
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = f"{METHOD} ({self.profile.edition})"
        codes = [self.profile.basic_code] + [
            self.profile.option_codes[o.value] for o in sorted(self.profile.options, key=lambda o: o.value)
        ]
        seq = Sequence()
        for code, meaning in codes:
            item = Dataset()
            item.CodeValue = code
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            seq.append(item)
        ds.DeidentificationMethodCodeSequence = seq
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.modified_dates else "UNMODIFIED" if self.full_dates else "REMOVED"
        )
