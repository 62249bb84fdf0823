"""Site rules in the ``deid`` package's recipe format, applied on top of the PS3.15 profile.

A recipe (``FORMAT dicom``, ``%header`` with ADD / REPLACE / REMOVE / KEEP / BLANK / JITTER lines)
is parsed by ``deid`` itself and applied after the profile, at every sequence depth.

**The rule: a recipe can only make the output stricter or fill values.** Enforced when the recipe
is loaded against the lake's resolved profile (:func:`check_recipe`) and again per element:

- REMOVE and BLANK are always allowed (they only take more away).
- JITTER moves kept DA/DT values by a further whole number of days (same for every patient).
- ADD and REPLACE take literal values only (no ``func:``/``var:``: a value computed from the
  source could copy PHI). They are refused for attributes the profile removes under the lake's
  options (X, or a combined action that may resolve to X), for private elements, for Patient ID
  and Patient's Name (keyed pseudonyms) and, unless Retain UIDs is selected, for UIDs (keyed
  consistently across the lake). REPLACE with a field pattern skips such elements.
- KEEP never undoes the profile: it only exempts matching elements from the recipe's other
  lines. A KEEP naming an attribute the profile does not keep (action other than K or C) is
  refused, so a site never believes it retained something it did not. To retain such an
  attribute, select the PS3.15 option that retains it when the lake is created.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from lake.deid.burned_in import quiet_deid
from lake.deid.dates import shift_da, shift_dt
from lake.deid.profile import Action, Profile, ProfileOption
from lake.errors import RecipeError

PSEUDONYM_TAGS = frozenset({0x00100020, 0x00100010})
_TAG = re.compile(r"^\(?(?:0x)?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")


class RecipeAction(StrEnum):
    ADD = "ADD"
    REPLACE = "REPLACE"
    REMOVE = "REMOVE"
    KEEP = "KEEP"
    BLANK = "BLANK"
    JITTER = "JITTER"


@dataclass(frozen=True)
class RecipeLine:
    action: RecipeAction
    field: str
    value: str | None = None


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe: its header lines in order and the SHA-256 of its text (for reports)."""

    lines: tuple[RecipeLine, ...]
    sha256: str


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Parse a recipe file with ``deid``; raises :class:`RecipeError` with the reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror}; pass a readable deid recipe file") from exc
    return parse_recipe(text, path)


def parse_recipe(text: str, path: Path | None = None) -> Recipe:
    """Parse recipe text with ``deid.config.utils.load_deid`` (which exits on errors: caught here)."""
    import tempfile

    _check_header_lines(text, path)
    from deid.config.utils import load_deid

    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "site.deid"
        file.write_text(text, encoding="utf-8")
        from deid.logger import bot

        try:
            with quiet_deid():
                parsed = load_deid(str(file))
        except SystemExit as exc:  # deid reports a bad line by exiting
            errors = [m for m in bot.history if "ERROR" in str(m)] if hasattr(bot, "history") else []
            why = str(errors[-1]).split("ERROR", 1)[-1].strip() if errors else "not a deid recipe"
            raise RecipeError(f"recipe {path or '<text>'} is invalid: {why}") from exc
    if parsed.get("format") != "dicom":
        raise RecipeError(f"recipe {path or '<text>'}: expected 'FORMAT dicom'")
    lines = []
    for entry in parsed.get("header", []) or []:
        try:
            action = RecipeAction(entry["action"])
        except ValueError as exc:
            raise RecipeError(f"recipe action {entry['action']!r} is not supported; use one of {_names()}") from exc
        value = entry.get("value")
        if value is not None and re.match(r"^(func|var|deid_func):", str(value)):
            raise RecipeError(
                f"{action} {entry['field']}: computed values ({value.split(':')[0]}:) are not allowed; "
                "use a literal value"
            )
        if action is RecipeAction.JITTER:
            try:
                int(str(value))
            except ValueError as exc:
                raise RecipeError(f"JITTER {entry['field']}: {value!r} is not a whole number of days") from exc
        lines.append(RecipeLine(action, str(entry["field"]), None if value is None else str(value)))
    return Recipe(tuple(lines), hashlib.sha256(text.encode("utf-8")).hexdigest())


def _check_header_lines(text: str, path: Path | None) -> None:
    """``deid`` skips lines it does not know; a misspelt REMOVE must not silently keep PHI."""
    section = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("%"):
            section = line[1:].split()[0].lower() if line[1:].split() else ""
            continue
        if section == "header" and line.split()[0].upper() not in RecipeAction.__members__:
            raise RecipeError(f"recipe {path or '<text>'} line {number}: {line.split()[0]!r} is not one of {_names()}")


def _names() -> str:
    return ", ".join(a.value for a in RecipeAction)


def exact_tag(field: str) -> int | None:
    """The tag an exact field names (keyword or ``(gggg,eeee)``), or None for a pattern."""
    m = _TAG.match(field.strip())
    if m:
        return int(m.group(1) + m.group(2), 16)
    if ":" in field:
        return None
    return tag_for_keyword(field.strip())


def field_matcher(field: str) -> Callable[[BaseTag], bool]:
    """A predicate on tags for a deid field expression (keyword, tag, startswith:, endswith:, contains:, ALL)."""
    field = field.strip()
    tag = exact_tag(field)
    if tag is not None:
        return lambda t: int(t) == tag
    kind, _, arg = field.partition(":")
    kind = kind.lower()
    arg_low = arg.lower()

    def keyword(t: BaseTag) -> str:
        return (keyword_for_tag(t) or "").lower()

    if kind == "startswith":
        return lambda t: keyword(t).startswith(arg_low)
    if kind == "endswith":
        return lambda t: keyword(t).endswith(arg_low)
    if kind == "contains":
        return lambda t: arg_low in keyword(t)
    if field.lower() in ("all", "allfields"):
        return lambda t: True
    raise RecipeError(
        f"recipe field {field!r} is not supported: use a keyword, (gggg,eeee), startswith:, endswith:, contains: or ALL"
    )


def _removes(action: Action | None) -> bool:
    return action is not None and action.value.startswith("X")


def check_recipe(recipe: Recipe, profile: Profile) -> None:
    """Refuse a recipe that would re-admit what the profile removes (see the module docstring)."""
    retain_uids = ProfileOption.RETAIN_UIDS in profile.options
    problems = []
    for line in recipe.lines:
        field_matcher(line.field)  # validates the expression
        tag = exact_tag(line.field)
        if tag is None:
            if line.action is RecipeAction.ADD:
                problems.append(f"ADD {line.field}: ADD needs an exact keyword or tag")
            continue
        if line.action in (RecipeAction.REMOVE, RecipeAction.BLANK, RecipeAction.JITTER):
            continue
        action = profile.action_for(tag) if not BaseTag(tag).is_private else Action.REMOVE
        name = keyword_for_tag(tag) or line.field
        if BaseTag(tag).is_private:
            problems.append(f"{line.action} {name}: private elements are kept only through the private safelist")
        elif line.action is RecipeAction.KEEP:
            if action not in (None, Action.KEEP, Action.CLEAN):
                problems.append(
                    f"KEEP {name}: the profile's action is {action.value if action else '?'} under this lake's "
                    "options; KEEP cannot retain it (select the option that retains it)"
                )
        elif tag in PSEUDONYM_TAGS:
            problems.append(f"{line.action} {name}: holds the keyed pseudonym and cannot be set by a recipe")
        elif _removes(action):
            problems.append(
                f"{line.action} {name}: the profile removes it (action {action.value if action else '?'}) under "
                "this lake's options"
            )
        elif action is Action.UID and not retain_uids:
            problems.append(f"{line.action} {name}: UIDs are keyed consistently and cannot be set by a recipe")
        elif line.action is RecipeAction.ADD:
            try:
                dictionary_VR(tag)
            except KeyError:
                problems.append(f"ADD {line.field}: not a standard attribute")
    if problems:
        raise RecipeError("recipe refused: " + "; ".join(problems))


class RecipeApplier:
    """Applies a checked recipe to a de-identified dataset, at every depth."""

    def __init__(self, recipe: Recipe, profile: Profile) -> None:
        check_recipe(recipe, profile)
        self.recipe = recipe
        self.profile = profile
        self.retain_uids = ProfileOption.RETAIN_UIDS in profile.options
        self._lines = [(line, field_matcher(line.field)) for line in recipe.lines]
        self._keep = [m for line, m in self._lines if line.action is RecipeAction.KEEP]

    def apply(self, ds: Dataset, counts: Counter[tuple[str, str]]) -> None:
        for line, match in self._lines:
            if line.action is RecipeAction.ADD:
                self._add(ds, line, counts)
            elif line.action is not RecipeAction.KEEP:
                self._walk(ds, line, match, counts)

    def _add(self, ds: Dataset, line: RecipeLine, counts: Counter[tuple[str, str]]) -> None:
        tag = exact_tag(line.field)
        assert tag is not None  # check_recipe refuses ADD without an exact field
        vr = dictionary_VR(tag)
        if tag in ds:
            ds[tag].value = line.value or ""
        else:
            ds.add_new(tag, vr, line.value or "")
        counts[(keyword_for_tag(tag) or line.field, "recipe:ADD")] += 1

    def _walk(
        self, ds: Dataset, line: RecipeLine, match: Callable[[BaseTag], bool], counts: Counter[tuple[str, str]]
    ) -> None:
        for tag in list(ds.keys()):
            elem = ds[tag]
            if match(tag) and not any(keep(tag) for keep in self._keep) and self._act(ds, elem, line):
                counts[(keyword_for_tag(tag) or "private", f"recipe:{line.action.value}")] += 1
                if tag not in ds:
                    continue
            if elem.VR == "SQ" and tag in ds:
                for item in elem.value:
                    self._walk(item, line, match, counts)

    def _act(self, ds: Dataset, elem: DataElement, line: RecipeLine) -> bool:
        """Apply one line to one element; False when the line does not apply to it."""
        if line.action is RecipeAction.REMOVE:
            del ds[elem.tag]
        elif line.action is RecipeAction.BLANK:
            if elem.VR == "SQ":
                elem.value = []
            elif elem.VR in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"):
                elem.value = None
            else:
                elem.value = b"" if elem.VR in ("OB", "OW", "UN") else ""
        elif line.action is RecipeAction.JITTER:
            return self._jitter(ds, elem, int(str(line.value)))
        elif line.action is RecipeAction.REPLACE:
            if int(elem.tag) in PSEUDONYM_TAGS or elem.tag.is_private or elem.VR == "SQ":
                return False
            if elem.VR == "UI" and not self.retain_uids:
                return False
            elem.value = line.value or ""
        return True

    def _jitter(self, ds: Dataset, elem: DataElement, days: int) -> bool:
        if elem.VR not in ("DA", "DT") or elem.value in (None, ""):
            return False
        fn = shift_da if elem.VR == "DA" else shift_dt
        values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
        out = [fn(str(v), days) for v in values]
        if any(v is None for v in out):
            del ds[elem.tag]  # a value that cannot be moved is not kept as it was
        else:
            elem.value = out if len(out) > 1 else out[0]
        return True
