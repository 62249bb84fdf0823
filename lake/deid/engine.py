"""De-identification of one pydicom Dataset to PS3.15 Annex E, with keyed, consistent replacements.

Why not the ``deid`` package's header engine: it re-parses recipes per file, builds a flat field
index of the whole dataset first and walks nested sequences only in some code paths; on the same
files it is about 50x slower than a pydicom read (``benchmarks/ingest.py`` measures it). This
engine makes one pass over the elements with an O(1) action lookup per tag; ``deid`` still parses
site recipes (``lake.deid.recipe``) and supplies the burned-in pixel rules.

Text, in three steps:

1. **Identifiers are learned from every depth** before any text is cleaned (:meth:`_identifiers`):
   every person name (any PN element, in any sequence item, private ones included), every
   identifier-like attribute the profile removes or replaces (IDs, accession and order numbers,
   names of institutions, physicians, operators, observers and organisations, addresses, phone
   numbers: ``_IDENTITY_TAGS`` plus the profile rows ``_identifier_tags`` selects), and the codes of
   person and institution identification code sequences. A name written only in a Verifying
   Observer or Request Attributes item is then also removed from StudyDescription or an SR
   TextValue elsewhere in the file.
2. **Matching is spelling-tolerant and bounded by distinctiveness** (:class:`TextCleaner`,
   :mod:`lake.deid.names`): case, accents and transliterations are ignored; long tokens are found
   inside glued tokens, short or common ones (``CT``, ``US``, ``PERFUSION``, ``HEAD``) only as whole
   values.
3. **What is text depends on the VR** of attributes Table E.1-1 does not list:

   =====================  ===========================================================================
   UR                     removed (a URL is never research data: ``...?patientID=...``)
   PN                     removed (a person name is never research data)
   ST, LT, UT, UC         cleaned under Clean Descriptors (or inside a sequence the profile cleans),
                          removed otherwise; under Clean Descriptors they (and the descriptors the
                          profile cleans) also lose person names (:mod:`lake.deid.ner`), or are
                          removed where that step is not installed
   LO, SH, AE             cleaned (this patient's identifiers, dates, phones, e-mails, long numbers)
   CS                     kept: enumerated values (Modality, ImageType, BodyPartExamined) are not text
   UN                     decoded with the dictionary VR when the tag is known and the payload is
                          text, then treated as that VR; a text payload of a non-text VR is removed
   =====================  ===========================================================================

   Coded values are never text either: CodeValue, CodingSchemeDesignator, CodingSchemeVersion,
   CodeMeaning (and the long/URN code values, mapping resource, context identifier) are kept as
   they are in code sequence items of standard coding schemes (counted ``kept_coded_value`` when
   one contains an identifier token, so the report shows it); in local schemes (``99...``, or any
   designator not in ``STANDARD_SCHEMES``) they lose this patient's identifiers, phone numbers and
   e-mail addresses only. An item
   without a CodingSchemeDesignator is not a code, and its "CodeMeaning" is cleaned as text.
   Six-digit codes (DCM 113690, SCT 39607008) used to become ``*``: inside a sequence the profile
   cleans (ContentSequence, Request Attributes) CodeValue, an unlisted SH, was cleaned as free text,
   and the cleaner's "long digit run" pattern (for record numbers) took it. UIDs of SOP
   classes and transfer syntaxes are kept (:meth:`Deidentifier.map_uid`).

Every change is counted in ``DeidResult.counts`` as (attribute keyword or tag, action or reason),
never with a value: the profile's action codes (``X``, ``Z``, ``D``, ``K``, ``C``, ``U``...) and
the reasons of this module's own rules (``REASONS``), which ``reports/deid-RUN.json`` lists.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar

from pydicom import Dataset
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_has_tag, get_entry, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from lake.deid.attribute_types import concrete_action
from lake.deid.clean import TextCleaner, cleaner_for, date_forms
from lake.deid.dates import shift_da, shift_dt
from lake.deid.identity import IdentityFacts, PatientIdentifier, PatientRef
from lake.deid.ner import NameFinder, finder  # issue 12: person names the header does not hold
from lake.deid.profile import Action, LakeOption, Profile, ProfileOption
from lake.deid.recipe import Recipe, RecipeApplier
from lake.deid.text_dates import TextDateCleaner, collapse_ages  # issue 12: dates and ages in free text
from lake.errors import RejectedInput
from lake.keys import LakeKey

logger = logging.getLogger(__name__)

METHOD = "lake PS3.15 E.1-1 de-identification"
DICOM_ROOT = "1.2.840.10008."
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "AE"})  # CS is enumerated, never cleaned
FREE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UC"})
#: the reasons (besides the profile's action codes) that counts and the deid report carry
REASONS = {
    "removed_unlisted_url": "a UR attribute Table E.1-1 does not list",
    "removed_unlisted_name": "a PN attribute Table E.1-1 does not list",
    "removed_unlisted_text_vr": "free text (ST, LT, UT, UC) Table E.1-1 does not list, without Clean Descriptors",
    "removed_un_text": "a UN (or undecoded) payload that reads as text, of a tag whose VR is not text",
    "decoded_un_text": "a UN (or undecoded) payload of a text attribute, decoded and treated as its VR",
    "cleaned_identifier_token": "an identifier of this file's people was removed from the value",
    "cleaned_identifier_value": "the whole value was a short or common identifier",
    "cleaned_generic_pattern": "a date, phone number, e-mail address or long number was removed",
    "kept_coded_value": "a coded or enumerated value that contains an identifier token, kept as coded",
    "shifted_text_date": "a date written in free text was shifted by the patient's offset (or removed)",
    "collapsed_text_age": "an age over 89 written in free text became 90+ (hipaa_safe_harbor_ages)",
    "cleaned_person_name": "a person name found in text by the named-entity step (lake.deid.ner) was removed",
    "removed_free_text_no_ner": "text under clean_descriptors removed: the named-entity step is not installed"
    ' (pip install "lake[ner]")',
}
_CLEAN_REASON = {
    "identifier": "cleaned_identifier_token",
    "identifier_value": "cleaned_identifier_value",
    "pattern": "cleaned_generic_pattern",
    "date": "shifted_text_date",
    "age": "collapsed_text_age",
}
#: attributes of code sequence items (PS3.3 Table 8.8-1): codes, never text
_CODE_TAGS = frozenset(
    {0x00080100, 0x00080102, 0x00080103, 0x00080104, 0x00080105, 0x0008010F, 0x00080119, 0x00080120, 0x00080122}
)
_ODD_GROUP = 0x00010000  # the low bit of the group number: a private tag
_PRIVATE_REMOVED = ("private", "X")  # the count of a removed private element (_count_name of any of them)
#: entries in each of the engine's per-tag memos (bounded: a hostile file may carry many unknown tags)
_CACHE_SIZE = 65536
_CODING_SCHEME = BaseTag(0x00080102)
_CODE_VALUE = BaseTag(0x00080100)
_CODE_MEANING = BaseTag(0x00080104)
#: registered coding scheme designators (PS3.16 Table 8-1, the common ones): their codes are kept
#: verbatim; any other designator (``99...`` local, or unknown) is a local scheme
_STANDARD_SCHEME_NAMES = """DCM SCT SRT SNM3 LN LNC FMA RADLEX UCUM NCIT NCIt MDC ICD10 I10 I9C I9 ICD9CM
    ICD10PCS ICDO3 C4 C5 CPT HPC ACR BARI CD2 DC ISO3166_1 ISO639_1 ISO639_2 MSH UMLS NDC RXNORM HL7
    ITIS_TSN NEU PUBCHEM_CID
    UNS UPC MGI RFC5646 DCMUID UBERON NCBITaxon ORPHA GO CHEBI IBSI ATC NBD DCMR"""
STANDARD_SCHEMES = frozenset(_STANDARD_SCHEME_NAMES.split())
#: code sequences whose codes identify a person or an institution (their codes are identifiers)
_IDENTITY_CODE_SEQUENCES = frozenset({0x00401101, 0x00080082, 0x00081072, 0x00081052, 0x00081062, 0x0008009D})
#: profile rows that look like identifiers by keyword but hold research descriptors
_DESCRIPTOR_ROWS = frozenset(
    {
        "ProtocolName",
        "ROIName",
        "StructureSetName",
        "RTPlanName",
        "PositionAcquisitionTemplateName",
        "ClinicalTrialProtocolName",
        "ClinicalTrialTimePointID",
        "CountryOfResidence",
        "EntityName",
        "RTAccessoryHolderSlotID",
        "RTAccessoryDeviceSlotID",
        "ContainerComponentID",
    }
)
_IDENTIFIER_KEYWORD = re.compile(
    r"ID$|IDs$|Identifier|Number|Numbers$|Name$|Names$|Address|Organization|Telephone|Telecom|Location|Residence"
)
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
    0x0040A027: "VerifyingOrganization",
    0x0040A075: "VerifyingObserverName",
    0x00400009: "ScheduledProcedureStepID",
    0x00400253: "PerformedProcedureStepID",
    0x00402016: "PlacerOrderNumberImagingServiceRequest",
    0x00402017: "FillerOrderNumberImagingServiceRequest",
    0x00102297: "ResponsiblePerson",
    0x00102299: "ResponsibleOrganization",
    0x00401102: "PersonAddress",
    0x00401103: "PersonTelephoneNumbers",
}
_NAME_LIKE = re.compile(r"[^\W\d_][\w\s'.,^=-]*", re.UNICODE)
_HONORIFICS = frozenset({"dr", "md", "phd", "mr", "mrs", "ms", "miss", "prof", "jr", "sr", "ii", "iii", "iv", "rn"})
_STREET_WORDS = frozenset(
    {"lane", "road", "street", "avenue", "drive", "court", "place", "suite", "floor", "north", "south", "east"}
    | {"west", "apartment", "building"}
)
_ADDRESS_TAGS = frozenset({0x00101040, 0x00080081, 0x00080092, 0x00321033, 0x00401102})
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
    if len(components) >= 2:  # "Alonso Quixote", "Quixote, Alonso": the name as a phrase in either order
        components += [f"{components[1]} {components[0]}", f"{components[0]} {components[1]}"]
    words: list[str] = []
    if _NAME_LIKE.fullmatch(pn):
        words = [w.strip(".,") for c in components for w in c.split()]
        words = [w for w in words if len(w) >= 2 and w.lower() not in _HONORIFICS]
    return components + words


def _identifier_tags(profile: Profile) -> frozenset[int]:
    """Tags whose values identify people or places: the fixed list, and the text rows of Table E.1-1
    that the profile removes or replaces and whose keyword names an ID, number, name or address;
    never a row the profile keeps (an option that retains it retains it everywhere)."""
    # what an option retains (K: institution, device identity) is not an identifier to remove elsewhere
    tags = {t for t in _IDENTITY_TAGS if profile.action_for(t) is not Action.KEEP}
    for tag, keyword in profile.keywords.items():
        action = profile.action_for(tag)
        if action in (None, Action.KEEP, Action.CLEAN, Action.UID) or keyword in _DESCRIPTOR_ROWS:
            continue
        try:
            vr = get_entry(tag)[0]
        except KeyError:
            continue
        if vr in ("LO", "SH", "PN", "ST", "LT", "UT", "UC") and _IDENTIFIER_KEYWORD.search(keyword):
            tags.add(tag)
    return frozenset(tags)


def _may_hold_names(tag: int, vr: str | None) -> bool:
    """A sequence or a person name (by the element's VR, or the dictionary's when it has none)."""
    if vr is None or vr == "UN":
        vr = _dictionary_vr(tag)
    return vr in ("SQ", "PN", "", "UN")


@lru_cache(maxsize=8192)
def _dictionary_vr(tag: int) -> str:
    try:
        return str(get_entry(tag)[0])
    except KeyError:
        return ""  # unknown (private without a dictionary entry): looked at


_BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN", "SQ"})


def _undecoded(elem: DataElement) -> bool:
    """A UN element, or a payload left as bytes under a VR that is not binary ("US or SS", LT...)."""
    return elem.VR == "UN" or (isinstance(elem.value, bytes | bytearray) and elem.VR not in _BINARY_VRS)


def _is_code_item(ds: Dataset) -> bool:
    """A code sequence item: it names its coding scheme (without one, a "code" is only text)."""
    elem = ds.get(_CODING_SCHEME)
    return elem is not None and isinstance(elem.value, str) and bool(elem.value.strip())


def _as_text(raw: bytes) -> str | None:
    """The payload as text when it is printable ASCII or Latin-1 (with ``\\`` separators), else None."""
    body = raw.rstrip(b"\x00 ")
    if not body:
        return None
    text = body.decode("latin-1")
    printable = sum(1 for c in text if c.isprintable() or c in "\r\n\t")
    return text if printable == len(text) else None


@lru_cache(maxsize=8192)
def _known(tag: int) -> bool:
    """In the data dictionary, including repeating groups such as (60xx,0010)."""
    if dictionary_has_tag(tag):
        return True
    try:
        get_entry(tag)
    except KeyError:
        return False
    return True


def convert_values(ds: Dataset, private_values: bool = True) -> None:
    """Convert every raw value of ``ds``, at every depth (an exception for one that does not
    convert); those of private data elements (not their creators) only with ``private_values``."""
    for tag in list(ds.keys()):
        if not private_values and tag & _ODD_GROUP and tag & 0xFFFF > 0xFF:
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value or ():
                convert_values(item, private_values)


@lru_cache(maxsize=8192)
def _count_name(tag: int) -> str:
    """The name an attribute is counted under: its keyword, ``private``, or ``(gggg,eeee)``."""
    group, element = tag >> 16, tag & 0xFFFF
    return keyword_for_tag(tag) or ("private" if group % 2 else f"({group:04X},{element:04X})")


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

    #: The walk converts a private data element's value only where the element may be kept (its slot
    #: safelisted), so a parse for it may leave private values raw (:func:`lake.ingest.worker.parse`).
    converts_private_values: ClassVar[bool] = True

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
        self.clean_descriptors = ProfileOption.CLEAN_DESCRIPTORS in opts
        self._identifier_tags = _identifier_tags(self.profile)
        self._actions: dict[int, Action | None] = {}  # the profile's action per tag seen (_action_for)
        self._uids: dict[str, str] = {}  # original UID -> keyed UID (map_uid)
        #: (CodeValue, CodeMeaning) of the De-identification Method Code Sequence (CID 7050)
        self._method_codes = [self.profile.basic_code] + [
            self.profile.option_codes[o.value] for o in sorted(self.profile.options, key=lambda o: o.value)
        ]
        self._names: NameFinder | None = finder() if self.clean_descriptors else None  # loaded once per process

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
        """Identifier strings of this file's people, learned from every depth (nothing is changed)."""
        found: list[str] = []
        self._collect(ds, found, identity_codes=False)
        for tag in _DATE_IDENTIFIERS:
            value = ds.get(tag)
            if value is not None and isinstance(value.value, str):
                found.extend(date_forms(value.value))
        return [f for f in found if f and f.strip()]

    def _collect(self, ds: Dataset, found: list[str], identity_codes: bool) -> None:
        for raw in list(ds.values()):  # raw or converted elements; only candidates are converted
            tag = raw.tag
            if not (identity_codes or tag in self._identifier_tags or _may_hold_names(tag, raw.VR)):
                continue
            try:
                elem = ds[tag]
            except Exception:
                if int(tag) & _ODD_GROUP:
                    continue  # removed by the walk, or rejected there if its slot is kept (_private)
                raise
            vr = elem.VR
            if vr == "SQ":
                inner = identity_codes or int(tag) in _IDENTITY_CODE_SEQUENCES
                try:
                    for item in elem.value or ():
                        self._collect(item, found, inner)
                except Exception:
                    if int(tag) & _ODD_GROUP:
                        continue  # a private sequence that does not read: removed, or rejected by _private
                    raise
                continue
            itag = int(tag)
            if vr == "PN" or itag in self._identifier_tags or (identity_codes and itag in (0x00080100, 0x00080104)):
                if elem.value in (None, "", b""):
                    continue
                if isinstance(elem.value, bytes | bytearray):
                    continue  # a binary payload is removed or decoded elsewhere, not learned
                values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
                for v in values:
                    self._learn(itag, vr, str(v), found)

    @staticmethod
    def _learn(tag: int, vr: str, text: str, found: list[str]) -> None:
        found.append(text)
        if vr == "PN" or "^" in text:  # a person name written into an LO (an observer, an organisation)
            found.extend(_name_parts(text))
        elif tag in _ADDRESS_TAGS:
            # addresses are written in pieces elsewhere ("12 Imaginary Lane", "Nowhere")
            parts = [p.strip() for p in re.split(r"[,^\n;]", text) if len(p.strip()) >= 4]
            # single words only when long and alphabetic: place names, not "HEAD" or "12"
            words = {
                w for p in parts for w in p.split() if len(w) >= 5 and w.isalpha() and w.lower() not in _STREET_WORDS
            }
            found.extend([*parts, *words])

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
        cleaner: TextCleaner = cleaner_for(frozenset(self._identifiers(ds)))
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
        # (tag arithmetic instead of BaseTag's properties: this loop runs for every element of every file)
        creators = {int(t): str(ds[t].value or "") for t in tags if t & _ODD_GROUP and 0x10 <= t & 0xFFFF <= 0xFF}
        for tag in tags:
            itag = int(tag)
            if itag & _ODD_GROUP:
                self._private(ds, tag, result, cleaner, creators)
                continue
            elem = ds[tag]
            if not itag & 0xFFFF:  # group lengths are retired and would be wrong after edits
                del ds[tag]
                continue
            action = self._action_for(itag)
            if _undecoded(elem) and _known(itag):
                decoded = self._decode_un(ds, elem, result)
                if decoded is None:
                    continue
                elem = decoded
            if action is None and itag in _CODE_TAGS and _is_code_item(ds):
                self._coded(ds, elem, result, cleaner)
            elif action is None:
                self._unlisted(ds, elem, result, cleaner, cleaning)
            else:
                self._apply(ds, elem, action, result, cleaner, cleaning)

    def _action_for(self, tag: int) -> Action | None:
        """The profile's action for a public tag, remembered (unlisted tags scan the profile's patterns)."""
        try:
            return self._actions[tag]
        except KeyError:
            if len(self._actions) >= _CACHE_SIZE:
                self._actions.clear()
            action = self._actions[tag] = self.profile.action_for(tag)
            return action

    def _count(self, result: DeidResult, tag: BaseTag, what: str) -> None:
        result.counts[(_count_name(int(tag)), what)] += 1

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
                self._clean_text(elem, cleaner, generic=False, result=result, identifiers_only=True)
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
            self._free_text(ds, elem, result, cleaner)
        elif vr == "PN":
            self._zero(elem)
        elif vr == "UI":
            self._remap_uid(elem)
        elif vr == "CS":
            self._kept_coded(elem, cleaner, result)

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
        """Attributes Table E.1-1 does not name: kept, but made safe by VR (see the module docstring)."""
        vr = elem.VR
        tag = elem.tag
        if not _known(int(tag)):
            del ds[tag]  # an unknown public attribute can hold anything
            self._count(result, tag, "X-unknown")
        elif vr == "SQ":
            for item in elem.value:
                self._walk(item, result, cleaner, cleaning)
        elif vr in ("DA", "DT"):
            self._date(ds, elem, result)
            self._count(result, tag, "date")
        elif vr == "PN":
            del ds[tag]
            self._count(result, tag, "removed_unlisted_name")
        elif vr == "UR":
            del ds[tag]
            self._count(result, tag, "removed_unlisted_url")
        elif vr == "UI":
            self._remap_uid(elem)
        elif vr == "CS":
            self._kept_coded(elem, cleaner, result)
        elif vr in FREE_TEXT_VRS and not (cleaning or self.clean_descriptors):
            del ds[tag]
            self._count(result, tag, "removed_unlisted_text_vr")
        elif vr in FREE_TEXT_VRS and elem.value not in (None, ""):
            self._free_text(ds, elem, result, cleaner)
        elif vr in TEXT_VRS and elem.value not in (None, ""):
            self._clean_text(elem, cleaner, generic=True, result=result)

    def _free_text(self, ds: Dataset, elem: DataElement, result: DeidResult, cleaner: TextCleaner) -> None:
        """Cleaned text; under Clean Descriptors it also loses person names, or goes without the step."""
        if self.clean_descriptors and self._names is None and elem.value not in (None, ""):
            del ds[elem.tag]
            self._count(result, elem.tag, "removed_free_text_no_ner")
            return
        self._clean_text(elem, cleaner, generic=True, result=result, names=self._names)

    def _coded(self, ds: Dataset, elem: DataElement, result: DeidResult, cleaner: TextCleaner) -> None:
        """A code sequence item's code: kept in standard schemes; other schemes lose identifiers only."""
        if elem.value in (None, "", b"") or isinstance(elem.value, bytes | bytearray):
            if isinstance(elem.value, bytes | bytearray):
                del ds[elem.tag]  # a code is text; an undecodable payload is not kept
                self._count(result, elem.tag, "removed_un_text")
            return
        scheme = str(ds[_CODING_SCHEME].value).strip()
        if scheme not in STANDARD_SCHEMES:
            self._clean_text(elem, cleaner, generic=False, result=result, identifiers_only=True, contact=True)
        else:
            self._kept_coded(elem, cleaner, result)

    def _kept_coded(self, elem: DataElement, cleaner: TextCleaner, result: DeidResult) -> None:
        """Coded and enumerated values stay as they are; counted when an identifier token was in one."""
        values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
        if any(v and cleaner.scrub(str(v), generic=False)[1] for v in values):
            self._count(result, elem.tag, "kept_coded_value")

    def _decode_un(self, ds: Dataset, elem: DataElement, result: DeidResult) -> DataElement | None:
        """A known public attribute read as UN (or left as bytes): its payload as the dictionary VR,
        or None if removed.

        Text VRs are decoded (ASCII or Latin-1, values split at ``\\``) and then treated as that VR;
        a payload of another VR that decodes as text is removed (it cannot be what the VR says);
        a binary payload of a binary VR is kept as it is.
        """
        raw = elem.value if isinstance(elem.value, bytes | bytearray) else b""
        try:
            dict_vr = get_entry(elem.tag)[0]
        except KeyError:
            dict_vr = "UN"
        text = _as_text(bytes(raw))
        if dict_vr in TEXT_VRS | {"PN", "UR", "CS"} and text is not None:
            parts = [p.strip(" \x00") for p in text.split("\\")]
            new = DataElement(elem.tag, dict_vr, parts if len(parts) > 1 else parts[0])
            ds[elem.tag] = new
            self._count(result, elem.tag, "decoded_un_text")
            return new
        if text is not None and raw.strip(b" \x00"):
            del ds[elem.tag]
            self._count(result, elem.tag, "removed_un_text")
            return None
        return elem

    def _private(
        self, ds: Dataset, tag: BaseTag, result: DeidResult, cleaner: TextCleaner, creators: dict[int, str]
    ) -> None:
        """Kept only when safelisted and its value is what the slot is for (``lake.deid.private.vet``).

        The value is converted only when the slot is safelisted (:attr:`converts_private_values`): a
        value that does not convert rejects the file as the parse would have."""
        from lake.deid.private import vet

        itag = int(tag)  # (int arithmetic, not BaseTag's properties: most elements of a file are private)
        element = itag & 0xFFFF
        creator_tag = (itag & 0xFFFF0000) | (element >> 8)
        creator_value = creators.get(creator_tag, "")
        rule = None
        if self.retain_private and element > 0xFF and creator_value:  # a data element, not a creator
            rule = self._safe_private.get((itag >> 16, creator_value.strip().upper(), element & 0xFF))
        if rule is None:  # creators are re-added below for any kept element of their block
            del ds[tag]
            result.counts[_PRIVATE_REMOVED] += 1
            return
        try:
            elem = ds[tag]
            if elem.VR == "SQ":
                for item in elem.value or ():
                    convert_values(item)
        except Exception as exc:
            raise RejectedInput("parse", f"malformed:{type(exc).__name__}", repr(exc)) from exc
        kept = vet(elem, rule, cleaner, result.counts)
        if isinstance(kept, str):
            del ds[tag]
            self._count(result, tag, kept)
            return
        if kept is not elem:
            ds[tag] = kept
        if creator_tag not in ds:
            ds.add_new(BaseTag(creator_tag), "LO", creator_value)
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
        mapped = self._uids.get(uid)
        if mapped is None:  # an HMAC per UID; the files of a series share their study, series, frame UIDs
            if len(self._uids) >= _CACHE_SIZE:
                self._uids.clear()
            mapped = self._uids[uid] = self.key.uid(uid)
        return mapped

    def _clean_text(
        self,
        elem: DataElement,
        cleaner: TextCleaner,
        generic: bool,
        result: DeidResult | None = None,
        identifiers_only: bool = False,
        contact: bool = False,
        names: NameFinder | None = None,
    ) -> None:
        """Clean a text value in place; counted (with the reason) when it changed.

        ``generic`` adds the generic patterns (dates, phones, e-mails, long numbers) to this file's
        identifiers; ``identifiers_only`` is for values the profile keeps (K) and local codes, which
        still lose phone numbers and e-mail addresses when ``contact`` is set.
        """
        if elem.VR == "CS":  # enumerated: never text (the profile's own actions still apply)
            return
        values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
        out: list[str] = []
        reasons: set[str] = set()
        for v in values:
            text, why = cleaner.scrub(str(v), generic=generic or not identifiers_only, contact=contact)
            if names is not None and (found := names.redact(text))[1]:
                text = found[0]
                reasons.add("cleaned_person_name")
            out.append(text)
            if why is not None:
                reasons.add(_CLEAN_REASON[why])
        if not reasons:
            return
        elem.value = out if len(out) > 1 else (out[0] if out else "")
        if result is not None:
            for reason in sorted(reasons):
                self._count(result, elem.tag, reason)

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
        # New items from prebuilt values (the profile's own, valid codes): a keyword assignment per
        # attribute looked each keyword up and validated each value again, 20% of the engine's time.
        items = [
            Dataset(
                {
                    _CODE_VALUE: DataElement(_CODE_VALUE, "SH", code, already_converted=True),
                    _CODING_SCHEME: DataElement(_CODING_SCHEME, "SH", "DCM", already_converted=True),
                    _CODE_MEANING: DataElement(_CODE_MEANING, "LO", meaning, already_converted=True),
                }
            )
            for code, meaning in self._method_codes
        ]
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.modified_dates else "UNMODIFIED" if self.full_dates else "REMOVED"
        )
