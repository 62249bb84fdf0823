"""Who an instance belongs to: the patient identity that keys pseudonyms and date offsets.

A lake chooses at ``init`` what identifies a patient (``lake.json``, section ``identity``):

- ``patient_id`` (the default for new lakes): PatientID alone, one MRN domain, as PS3.15 tools and
  PACS do. IssuerOfPatientID is ignored, so "", "HOSP" and "Hosp A" written by different scanners
  do not split a patient.
- ``issuer_qualified``: (issuer, PatientID), for lakes that hold several hospitals' MRNs. An issuer
  alias table maps the spellings of one issuer to one domain. A ``lake.json`` written before this
  setting existed reads as ``issuer_qualified`` without aliases: exactly how its pseudonyms were keyed.

A person with several MRNs is linked by the identity crosswalk ``KEY.vault/identities.csv``, kept
with the key and never copied into the lake: every member of a group gets the pseudonym and date
offset of the group's canonical member, the smallest (domain, PatientID) in code point order.

A study without a Patient ID is its own patient, keyed on its original StudyInstanceUID (the SOP
Instance UID if it has none) in a separate digest domain: its own pseudonym and offset, never merged
with another study, and as distinct from every real patient's pseudonym as two patients' are.

:class:`IdentityLedger` keeps, in the vault, keyed digests (never values) of what each patient ID
was seen with, to count identity anomalies across runs and to refuse a crosswalk that would re-key
patients already in the lake.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from lake.errors import ConfigError

if TYPE_CHECKING:
    from pydicom import Dataset

    from lake.config import IdentitySettings
    from lake.keys import LakeKey

#: The identity crosswalk's file name in the vault (``KEY.vault/identities.csv``).
CROSSWALK_NAME = "identities.csv"


class PatientIdentity(StrEnum):
    """What identifies a patient in a lake (``lake init --patient-identity``)."""

    PATIENT_ID = "patient_id"
    ISSUER_QUALIFIED = "issuer_qualified"


#: New lakes; a lake.json without the setting reads as :data:`LEGACY_IDENTITY`.
DEFAULT_IDENTITY = PatientIdentity.PATIENT_ID
LEGACY_IDENTITY = PatientIdentity.ISSUER_QUALIFIED


def issuer_spelling(issuer: str) -> str:
    """How an issuer is looked up in the alias table: whitespace collapsed, case folded."""
    return " ".join(issuer.split()).casefold()


def load_issuer_aliases(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read an alias table: a CSV with the header ``issuer,domain``, one spelling per row.

    Returns ``{spelling: domain}`` (spellings as :func:`issuer_spelling` folds them; an empty
    issuer is a spelling too, for scanners that write none). Each domain is also an alias of
    itself. Raises :class:`ConfigError` naming the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read the issuer alias table {path}: {exc.strerror}") from exc
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip().lower() for c in rows[0]] != ["issuer", "domain"]:
        raise ConfigError(f"{path} must be a CSV whose first line is the header `issuer,domain`")
    pairs: list[tuple[str, str, str]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != 2 or not row[1].strip():
            raise ConfigError(f"{path} line {line}: give two columns, an issuer spelling and a non-empty domain")
        pairs.append((row[0], row[1], f"{path} line {line}"))
    return _aliases(pairs, str(path))


def issuer_aliases_from(mapping: dict[str, str]) -> dict[str, str]:
    """:func:`load_issuer_aliases` for a mapping ``{issuer spelling: domain}`` given in Python."""
    return _aliases([(k, v, "the issuer aliases") for k, v in mapping.items()], "the issuer aliases")


def _aliases(pairs: list[tuple[str, str, str]], source: str) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for issuer, domain_, where in pairs:
        if not isinstance(issuer, str) or not isinstance(domain_, str) or not domain_.strip():
            raise ConfigError(f"{where}: an issuer spelling needs a non-empty domain name")
        spelling, domain = issuer_spelling(issuer), domain_.strip()
        if aliases.get(spelling, domain) != domain:
            raise ConfigError(f"{where}: this issuer spelling is already mapped to another domain")
        aliases[spelling] = domain
    for domain in set(aliases.values()):
        if aliases.setdefault(issuer_spelling(domain), domain) != domain:
            raise ConfigError(f"{source}: a domain name is also given as a spelling of another domain")
    return dict(sorted(aliases.items()))


@dataclass(frozen=True, order=True)
class PatientRef:
    """The identity behind a pseudonym: a (domain, PatientID) member, or a study without a Patient ID."""

    domain: str = ""
    patient_id: str = ""
    study: str = ""  # the original StudyInstanceUID when there is no Patient ID

    @property
    def key(self) -> str:
        """The string the date offset is keyed on (for members, unchanged since the first lakes)."""
        return f"\x01study\x00{self.study}" if self.study else f"{self.domain}\x00{self.patient_id}"

    def pseudonym(self, key: LakeKey) -> str:
        return key.study_pseudonym(self.study) if self.study else key.pseudonym(self.domain, self.patient_id)

    def day_offset(self, key: LakeKey, low: int, high: int) -> int:
        if self.study:
            return key.study_day_offset(self.study, low, high)
        return key.day_offset(self.key, low, high)


@dataclass(frozen=True)
class IdentityFacts:
    """What one instance says about its patient ID, as keyed digests (hex; empty when absent)."""

    member: str  # the (domain, PatientID) member, before the crosswalk
    patient_id: str  # the PatientID alone
    domain: str
    birth_date: str
    sex: str


@dataclass
class Crosswalk:
    """Groups of members that are one person: ``{member: canonical member}``, and each member's
    line in the file (for messages that name lines, never values)."""

    canonical: dict[PatientRef, PatientRef] = field(default_factory=dict)
    lines: dict[PatientRef, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.canonical)


@dataclass
class PatientIdentifier:
    """Resolves a dataset to the :class:`PatientRef` its pseudonym and offset are keyed on.

    Holds original IDs (the crosswalk) in memory only; it is sent to worker processes like the key.
    """

    identity: PatientIdentity = DEFAULT_IDENTITY
    aliases: dict[str, str] = field(default_factory=dict)
    crosswalk: Crosswalk = field(default_factory=Crosswalk)
    #: lakes from before the identity setting keyed a study without a Patient ID as the patient ID
    #: ``study:<StudyInstanceUID>``; they keep doing so, so that such a study's instances still link
    legacy_study_keys: bool = False
    _facts: dict[tuple[PatientRef, str, str], IdentityFacts] = field(default_factory=dict, repr=False, compare=False)

    def domain(self, issuer: str) -> str:
        if self.identity is PatientIdentity.PATIENT_ID:
            return ""
        issuer = issuer.strip()
        # unaliased issuers stay as written (stripped): how issuer-qualified lakes were always keyed
        return self.aliases.get(issuer_spelling(issuer), issuer)

    def member(self, ds: Dataset) -> PatientRef:
        """The dataset's own identity: (domain, PatientID), or its study when it has no Patient ID."""
        pid = str(ds.get("PatientID", "") or "").strip()
        issuer = str(ds.get("IssuerOfPatientID", "") or "")
        if not pid and self.legacy_study_keys:
            return PatientRef(self.domain(issuer), "study:" + str(ds.get("StudyInstanceUID", "") or "").strip())
        if not pid:
            study = str(ds.get("StudyInstanceUID", "") or "").strip() or str(ds.get("SOPInstanceUID", "") or "")
            return PatientRef(study=study.strip())
        return PatientRef(self.domain(issuer), pid)

    def resolve(self, member: PatientRef) -> PatientRef:
        return self.crosswalk.canonical.get(member, member)

    def facts(self, key: LakeKey, ds: Dataset, member: PatientRef) -> IdentityFacts | None:
        """Keyed digests of the member and its birth date and sex (None for a study without a Patient ID)."""
        if member.study:
            return None

        def digest(what: str, *parts: str) -> str:
            return key.identity_digest(what, *parts) if all(parts) else ""

        birth = str(ds.get("PatientBirthDate", "") or "").strip()
        sex = str(ds.get("PatientSex", "") or "").strip().upper()
        # a patient's files usually come together: their digests are computed once
        cached = self._facts.get((member, birth, sex))
        if cached is not None:
            return cached
        if len(self._facts) >= 4096:
            self._facts.clear()
        facts = self._facts[(member, birth, sex)] = IdentityFacts(
            member=key.identity_digest("member", member.domain, member.patient_id),
            patient_id=key.identity_digest("patient-id", member.patient_id),
            domain=key.identity_digest("domain", member.domain),
            birth_date=digest("birth-date", birth),
            sex=digest("sex", sex),
        )
        return facts


def load_crosswalk(path: Path, identifier: PatientIdentifier) -> Crosswalk:
    """Read ``identities.csv``: header ``person,issuer,patient_id`` (``issuer`` may be left out);
    rows with the same ``person`` are one person.

    Issuers go through the lake's alias table; in a ``patient_id`` lake they are ignored. Raises
    :class:`ConfigError` naming the file and line (never a value) for a malformed row or a patient
    ID listed under two persons. A missing file is an empty crosswalk.
    """
    if not path.is_file():
        return Crosswalk()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read the identity crosswalk {path}: {exc.strerror}") from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "person" not in header or "patient_id" not in header or not set(header) <= {"person", "issuer", "patient_id"}:
        raise ConfigError(f"{path} must be a CSV whose first line is `person,issuer,patient_id` (issuer optional)")
    reader.fieldnames = header
    groups: dict[str, list[tuple[PatientRef, int]]] = {}
    seen: dict[PatientRef, tuple[str, int]] = {}
    for row in reader:
        line = reader.line_num
        person = (row.get("person") or "").strip()
        pid = (row.get("patient_id") or "").strip()
        if not person and not pid:
            continue
        if not person or not pid:
            raise ConfigError(f"{path} line {line}: every row needs a person and a patient_id")
        member = PatientRef(identifier.domain(row.get("issuer") or ""), pid)
        if member in seen and seen[member][0] != person:
            raise ConfigError(
                f"{path} lines {seen[member][1]} and {line} put one patient ID under two persons: "
                "merge the two persons, or qualify the IDs by issuer in an issuer_qualified lake"
            )
        seen.setdefault(member, (person, line))
        groups.setdefault(person, []).append((member, line))
    crosswalk = Crosswalk()
    for members in groups.values():
        canonical = min(m for m, _ in members)
        for member, line in members:
            crosswalk.canonical[member] = canonical
            crosswalk.lines.setdefault(member, line)
    return crosswalk


def identity_fingerprint(settings: IdentitySettings) -> str:
    """A digest of an identity setting (issuer names, no patient data), to notice a changed lake.json."""
    text = json.dumps(asdict(settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class IdentityLedger:
    """Keyed digests of what each patient ID was seen with, per lake, in the vault.

    ``KEY.vault/identity-<lake id>.jsonl`` holds one JSON line per new fact: the identity setting's
    fingerprint, and per member the pseudonym it was given, its birth date and sex digests, and its
    PatientID and domain digests. Nothing in it is readable without the key. Appends only; a line
    cut short by a crash is skipped on reading.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.setting: str | None = None
        self.pseudonyms: dict[str, str] = {}
        self.birth_dates: dict[str, set[str]] = {}
        self.sexes: dict[str, set[str]] = {}
        self.domains: dict[str, set[str]] = {}
        self._pending: list[dict[str, str]] = []
        if path.is_file():
            for text in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(text)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict):
                    self._apply(entry)

    @classmethod
    def for_lake(cls, vault: Path, lake_id: str) -> IdentityLedger:
        return cls(vault / f"identity-{lake_id}.jsonl")

    def _apply(self, entry: dict[str, str]) -> None:
        if "setting" in entry:
            self.setting = self.setting or entry["setting"]
            return
        member = entry.get("m", "")
        if not member:
            return
        if entry.get("p"):
            self.pseudonyms[member] = entry["p"]  # a later one only after the earlier was withdrawn
        for name, table in (("b", self.birth_dates), ("s", self.sexes)):
            if entry.get(name):
                table.setdefault(member, set()).add(entry[name])
        if entry.get("q") and entry.get("d"):
            self.domains.setdefault(entry["q"], set()).add(entry["d"])

    def check_setting(self, fingerprint: str, described: str) -> None:
        """Refuse a lake whose identity setting differs from the one its patients were keyed with."""
        if self.setting is None:
            self._pending.append({"setting": fingerprint})
            self.setting = fingerprint
        elif self.setting != fingerprint:
            raise ConfigError(
                f"the lake's identity setting ({described}) is not the one its patients were keyed with: "
                "changing it would re-key the lake (new pseudonyms and date offsets for the same patients). "
                "Restore the identity section of lake.json, or build a new lake with "
                "`lake init NEW --patient-identity ...` and ingest the sources into it"
            )

    def check_crosswalk(self, crosswalk: Crosswalk, key: LakeKey, withdrawn: set[str], path: Path) -> None:
        """Refuse a crosswalk that links patient IDs already in the lake under another pseudonym."""
        lines = []
        for member, canonical in crosswalk.canonical.items():
            before = self.pseudonyms.get(key.identity_digest("member", member.domain, member.patient_id))
            if before is not None and before not in withdrawn and before != canonical.pseudonym(key):
                lines.append(crosswalk.lines[member])
        if lines:
            shown = ", ".join(map(str, sorted(lines)[:10])) + (", ..." if len(lines) > 10 else "")
            raise ConfigError(
                f"{path} links {len(lines)} patient ID(s) already in the lake under another pseudonym (lines "
                f"{shown}): linking them now would re-key those patients, splitting their studies between two "
                "pseudonyms and date offsets. Keep those rows out of the crosswalk, or `lake forget` the old "
                "pseudonyms first and ingest their files again"
            )

    def rekeyed(self, facts: IdentityFacts, pseudonym: str, withdrawn: set[str]) -> bool:
        """Whether this member was given another pseudonym before (e.g. a crosswalk row was removed)."""
        before = self.pseudonyms.get(facts.member)
        return before is not None and before != pseudonym and before not in withdrawn

    def add(self, facts: IdentityFacts, pseudonym: str) -> None:
        """Record what is new in ``facts`` (written by :meth:`save`)."""
        entry = {"m": facts.member}
        if self.pseudonyms.get(facts.member) != pseudonym:
            entry["p"] = pseudonym
        if facts.birth_date and facts.birth_date not in self.birth_dates.get(facts.member, ()):
            entry["b"] = facts.birth_date
        if facts.sex and facts.sex not in self.sexes.get(facts.member, ()):
            entry["s"] = facts.sex
        if facts.domain not in self.domains.get(facts.patient_id, ()):
            entry.update(q=facts.patient_id, d=facts.domain)
        if len(entry) > 1:
            self._apply(entry)
            self._pending.append(entry)

    def save(self) -> None:
        if not self._pending:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(e, sort_keys=True) + "\n" for e in self._pending)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(self.path, 0o600)
        self._pending.clear()

    def anomalies(self, members: set[str], patient_ids: set[str], qualified: bool) -> Counter[str]:
        """Counts (no values) over the given members and PatientIDs, with everything recorded before:
        patient IDs seen with several birth dates or sexes (MRN reuse), and, in an issuer-qualified
        lake, PatientIDs seen under several issuer domains."""
        counts: Counter[str] = Counter()
        counts["several_birth_dates"] = sum(len(self.birth_dates.get(m, ())) > 1 for m in members)
        counts["several_sexes"] = sum(len(self.sexes.get(m, ())) > 1 for m in members)
        if qualified:
            counts["several_issuers"] = sum(len(self.domains.get(q, ())) > 1 for q in patient_ids)
        return +counts


def identity_settings(
    patient_identity: str | PatientIdentity, issuer_aliases: dict[str, str] | str | os.PathLike[str] | None
) -> IdentitySettings:
    """The ``identity`` section of a new lake's ``lake.json``, checked (raises :class:`ConfigError`)."""
    from lake.config import IdentitySettings

    if issuer_aliases is None:
        aliases: dict[str, str] = {}
    elif isinstance(issuer_aliases, dict):
        aliases = issuer_aliases_from(issuer_aliases)
    else:
        aliases = load_issuer_aliases(issuer_aliases)
    settings = IdentitySettings(str(getattr(patient_identity, "value", patient_identity)), aliases)
    settings.validate()
    return settings


def identifier_for(settings: IdentitySettings, crosswalk: Crosswalk | None = None) -> PatientIdentifier:
    """The :class:`PatientIdentifier` a lake's identity settings describe."""
    identity = PatientIdentity(settings.patient_identity)
    aliases = dict(settings.issuer_aliases)
    return PatientIdentifier(identity, aliases, crosswalk or Crosswalk(), settings.legacy_study_keys)
