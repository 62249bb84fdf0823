"""The PS3.15 Table E.1-1 profile, loaded from ``schemas/deid/`` and resolved for a set of options."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

from lake.errors import ConfigError
from lake.resources import Traversable, schema_file

PROFILE_PATH = schema_file("deid", "ps3.15-table-e.1-1.json")  # package data (lake.resources)


class Action(StrEnum):
    """Table E.1-1 action codes."""

    REMOVE = "X"
    ZERO = "Z"
    DUMMY = "D"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"
    REMOVE_OR_ZERO = "X/Z"
    REMOVE_OR_DUMMY = "X/D"
    REMOVE_OR_ZERO_OR_DUMMY = "X/Z/D"
    ZERO_OR_DUMMY = "Z/D"
    REMOVE_OR_ZERO_OR_UID = "X/Z/U*"


class ProfileOption(StrEnum):
    """The options of PS3.15 E.3, named as in ``schemas/deid``; values are their CID 7050 names."""

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain_longitudinal_full_dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain_longitudinal_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"


class LakeOption(StrEnum):
    """Options of this lake beyond PS3.15 E.3 (not in CID 7050, so not in the method code sequence).

    ``hipaa_safe_harbor_ages``: every age over 89 years becomes "90 or older", as HIPAA Safe Harbor
    (45 CFR 164.514(b)(2)(i)(C)) asks: Age String values (``093Y``, ``1100M``, ``4800W``) become
    ``090Y``, and ages written in free text ("93-year-old", "93 yo", "aged 93") become ``90+``.
    Off by default: PS3.15 keeps exact ages under Retain Patient Characteristics.
    """

    HIPAA_SAFE_HARBOR_AGES = "hipaa_safe_harbor_ages"


class ProfileName(StrEnum):
    """The named profiles a lake is made with (``lake init --profile``), fixed for the lake's life.

    ``research`` (the default): Table E.1-1 with the lake's options, keyed pseudonyms, ``2.25.``
    UIDs and a per-patient date shift (:mod:`lake.deid.engine`). ``pass-through``: for data that is
    already de-identified (a teaching set exported by a lake, a public collection): UIDs, PatientID,
    dates and descriptors are kept as they are, only files with the de-identification marks are
    accepted and every text value is still audited for PHI (:mod:`lake.deid.passthrough`).
    """

    RESEARCH = "research"
    PASS_THROUGH = "pass-through"


DEFAULT_PROFILE = ProfileName.RESEARCH
#: Every profile name ``lake init --profile`` accepts.
PROFILE_NAMES: tuple[str, ...] = tuple(p.value for p in ProfileName)


def parse_profile_name(name: str | ProfileName) -> ProfileName:
    """A profile name (string or enum) as :class:`ProfileName`; raises :class:`ConfigError` naming the valid ones."""
    try:
        return ProfileName(name)
    except ValueError:
        raise ConfigError(
            f"unknown de-identification profile {name!r} (--profile at `lake init`, deid.profile in lake.json); "
            f"valid: {', '.join(PROFILE_NAMES)}"
        ) from None


#: Every option name ``lake init --option`` accepts: the PS3.15 options, then the lake's own.
OPTION_NAMES: tuple[str, ...] = (*(o.value for o in ProfileOption), *(o.value for o in LakeOption))


#: The default research profile: Basic + these options.
DEFAULT_RESEARCH_OPTIONS: tuple[ProfileOption, ...] = (
    ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
    ProfileOption.RETAIN_PATIENT_CHARACTERISTICS,
    ProfileOption.RETAIN_SAFE_PRIVATE,
    ProfileOption.CLEAN_DESCRIPTORS,
    ProfileOption.CLEAN_STRUCTURED_CONTENT,
)

# When several selected options name an action for one attribute, the most retaining one wins:
# an option exists to keep more than the Basic Profile, and K is what "retain" asks for.
_PRECEDENCE = {Action.KEEP: 0, Action.CLEAN: 1}


@dataclass(frozen=True)
class ProfileRow:
    tag: str  # "(0008,0050)", "(50XX,XXXX)" or "private"
    keyword: str
    name: str
    basic: Action
    options: dict[ProfileOption, Action]


@cache
def load_profile_table(path: Traversable = PROFILE_PATH) -> tuple[dict[str, Any], tuple[ProfileRow, ...]]:
    """Read the profile definition; returns (document metadata, rows)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rows = tuple(
            ProfileRow(
                tag=r["tag"],
                keyword=r["keyword"],
                name=r["name"],
                basic=Action(r["basic"]),
                options={ProfileOption(k): Action(v) for k, v in r.get("options", {}).items()},
            )
            for r in doc["attributes"]
        )
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"cannot load the de-identification profile {path}: {exc}") from exc
    return doc, rows


def parse_options(
    options: Iterable[str | ProfileOption | LakeOption],
) -> frozenset[ProfileOption | LakeOption]:
    """Accept option names (strings or enums); raise with the valid names on a typo."""
    out: set[ProfileOption | LakeOption] = set()
    for opt in options:
        if str(opt) in {o.value for o in LakeOption}:
            out.add(LakeOption(opt))
            continue
        try:
            out.add(ProfileOption(opt))
        except ValueError as exc:
            valid = ", ".join(OPTION_NAMES)
            raise ConfigError(f"unknown de-identification option {opt!r}; valid: {valid}") from exc
    if {ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES, ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES} <= out:
        raise ConfigError("choose one of retain_longitudinal_full_dates and retain_longitudinal_modified_dates")
    return frozenset(out)


def _pattern(tag: str) -> tuple[int, int]:
    """``(60XX,4000)`` -> (mask, value) for ``tag & mask == value``."""
    digits = tag[1:5] + tag[6:10]
    mask = int("".join("0" if c == "X" else "F" for c in digits), 16)
    value = int("".join("0" if c == "X" else c for c in digits), 16)
    return mask, value


class Profile:
    """Table E.1-1 resolved for one set of options: ``action_for(tag)`` in O(1)."""

    def __init__(self, options: Iterable[str | ProfileOption | LakeOption] = DEFAULT_RESEARCH_OPTIONS) -> None:
        parsed = parse_options(options)
        #: the PS3.15 options (each with its CID 7050 code)
        self.options: frozenset[ProfileOption] = frozenset(o for o in parsed if isinstance(o, ProfileOption))
        #: the lake's own options (:class:`LakeOption`), applied by the engine besides Table E.1-1
        self.lake_options: frozenset[LakeOption] = frozenset(o for o in parsed if isinstance(o, LakeOption))
        doc, rows = load_profile_table()
        self.edition: str = doc["edition"]
        self.option_codes: dict[str, tuple[str, str]] = {
            k: (v["code"], v["meaning"]) for k, v in doc["options"].items()
        }
        self.basic_code: tuple[str, str] = (doc["basic_profile_code"]["code"], doc["basic_profile_code"]["meaning"])
        self._exact: dict[int, Action] = {}
        self._patterns: list[tuple[int, int, Action]] = []
        self.private_action = Action.REMOVE
        self.keywords: dict[int, str] = {}
        for row in rows:
            action = self._resolve(row)
            if row.tag == "private":
                self.private_action = action
            elif "X" in row.tag[1:10].replace(",", ""):
                mask, value = _pattern(row.tag)
                self._patterns.append((mask, value, action))
            else:
                tag = int(row.tag[1:5] + row.tag[6:10], 16)
                self._exact[tag] = action
                self.keywords[tag] = row.keyword

    def _resolve(self, row: ProfileRow) -> Action:
        chosen = [a for opt, a in row.options.items() if opt in self.options]
        if not chosen:
            return row.basic
        return min(chosen, key=lambda a: _PRECEDENCE.get(a, 9))

    def action_for(self, tag: int) -> Action | None:
        """The action for a public tag, or None when Table E.1-1 does not list it."""
        action = self._exact.get(tag)
        if action is not None:
            return action
        for mask, value, pattern_action in self._patterns:
            if tag & mask == value:
                return pattern_action
        return None

    @property
    def listed_tags(self) -> frozenset[int]:
        return frozenset(self._exact)
