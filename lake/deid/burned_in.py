"""The ``deid`` package's curated pixel filter rules: which instances carry burned-in text, and where.

``deid`` ships ``deid.dicom``, a recipe whose ``%filter`` sections (graylist, blacklist, whitelist)
describe known scanner/workstation outputs with burned-in annotations, many with the regions to
blank (``coordinates x0,y0,x1,y1`` or CTP's ``ctpcoordinates x,y,w,h``). The rules are parsed by
``deid``; evaluation happens here, per element with ``deid.dicom.filter.apply_filter``, because
``deid``'s own loop needs a file on disk, rewrites ``from:`` coordinates in place and ANDs the
``||`` lines of a rule. Here ``+`` means and, ``||`` means or, evaluated left to right.

- graylist and blacklist matches put an instance at risk;
- a matched rule with remove-coordinates (mask value 0) gives the regions to blank; keep-regions
  (mask value 1) are ignored, which only blanks more;
- whitelist rules never lower a risk found otherwise;
- rules made only of ``missing``/``empty`` tests (e.g. "Missing ImageType") are not evidence of
  burned-in text but of an incomplete header, and do not put an instance at risk on their own.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword

from lake import diagnostics

Box = tuple[int, int, int, int]
RISK_GROUPS = ("graylist", "blacklist")
FULL_IMAGE = "all"


@dataclass(frozen=True)
class RuleMatch:
    group: str  # graylist, blacklist, whitelist
    label: str  # the rule's LABEL, without comments
    regions: tuple[Box | str, ...]  # boxes to blank, or "all"
    evidence: bool = True  # the rule tests a value (contains/equals), not only absence


@contextlib.contextmanager
def quiet_deid() -> Iterator[None]:
    """Keep ``deid``'s logger (which writes to the streams it saw at import) off our output.

    What it wrote is noted in the enclosing capture (code ``deid:message``), if any.
    """
    from deid.logger import bot

    streams = bot.errorStream, bot.outputStream
    out = io.StringIO()
    bot.errorStream = bot.outputStream = out
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield
    finally:
        bot.errorStream, bot.outputStream = streams
        caught = diagnostics.current()
        if caught is not None:
            for line in out.getvalue().splitlines():
                if line.strip():
                    caught.note("deid:message", line.strip())


@cache
def _filters() -> dict[str, list[dict[str, Any]]]:
    # Loading the rules (and importing deid, which uses a deprecated pydicom module) says nothing
    # about the file being processed: its messages are dropped, not counted against the file.
    with diagnostics.capture(forward=False), quiet_deid():
        import deid.dicom.filter  # noqa: F401
        from deid.config import DeidRecipe

        recipe = DeidRecipe("dicom")
        return dict(recipe.get_filters() or {})


def _filter(ds: Dataset, action: str, field: str, value: str | None) -> bool:
    from deid.dicom.filter import apply_filter

    try:
        return bool(apply_filter(dicom=ds, field=field, filter_name=action, value=value or None))
    except Exception:  # a value deid cannot compare (binary, odd VR) does not match
        return False


def _term(ds: Dataset, values: dict[str, str], action: str, field: str, value: str | None) -> bool:
    """One filter term: a function of the one attribute it reads (:func:`_value_key`), so its
    outcome (and what deid said computing it) is kept per value, as the whole rule set's is."""
    key = (action, field, value, values[field])
    known = _terms.get(key)
    if known is None:
        with diagnostics.capture() as said, quiet_deid():  # forwarded to the enclosing one at the end
            flag = _filter(ds, action, field, value)
        if len(_terms) >= TERM_CACHE_SIZE:
            _terms.clear()
        known = _terms[key] = (flag, said if said.codes() else None)
    elif known[1] is not None and (enclosing := diagnostics.current()) is not None:
        enclosing.merge(known[1])
    return known[0]


Term = tuple[str | None, str, str, str | None]  # (operator before it, action, attribute, operand)


@dataclass(frozen=True)
class _Rule:
    """One rule of deid's filters, parsed once: its groups of terms, each group joined to the ones
    before by its operator; a rule without groups matches when it has coordinates."""

    match: RuleMatch
    groups: tuple[tuple[str | None, tuple[Term, ...]], ...]
    bare: bool


def _flag(ds: Dataset, values: dict[str, str], rule: _Rule) -> bool:
    """Left-to-right and/or as ``deid``'s ``evaluate_group`` does, skipping terms that cannot matter
    ("and", or no operator, which deid treats as and)."""
    if not rule.groups:
        return rule.bare
    flagged = False
    for g, (group_operator, terms) in enumerate(rule.groups):
        if g and (flagged if group_operator == "or" else not flagged):
            continue
        inner = False
        for t, (operator, action, field, value) in enumerate(terms):
            if t and (inner if operator == "or" else not inner):
                continue
            inner = _term(ds, values, action, field, value)
        flagged = inner
    return flagged


@cache
def _rules() -> tuple[_Rule, ...]:
    out = []
    for group_name, items in _filters().items():
        for item in items:
            groups = []
            for group in item.get("filters") or []:
                inner = group["InnerOperators"]
                terms = tuple(
                    (
                        inner[i - 1] if i > 0 and len(inner) >= i else None,
                        action,
                        group["field"][i],
                        group["value"][i] if len(group["value"]) > i else None,
                    )
                    for i, action in enumerate(group["action"])
                )
                groups.append((group.get("operator"), terms))
            match = RuleMatch(group_name, _label(item), _regions(item), _evidence(item))
            out.append(_Rule(match, tuple(groups), bool(item.get("coordinates"))))
    return tuple(out)


def _evidence(item: dict[str, Any]) -> bool:
    actions = {a.lower() for g in item.get("filters") or [] for a in g["action"]}
    return bool(actions & {"contains", "equals"}) or not item.get("filters")


def _regions(item: dict[str, Any]) -> tuple[Box | str, ...]:
    out: list[Box | str] = []
    for mask_value, coordinate in item.get("coordinates", []):
        if int(mask_value) != 0 or not isinstance(coordinate, str) or coordinate.startswith("from:"):
            continue
        if coordinate.strip().lower() == FULL_IMAGE:
            out.append(FULL_IMAGE)
            continue
        try:
            x0, y0, x1, y1 = (int(v) for v in coordinate.split(","))
        except ValueError:
            continue
        out.append((x0, y0, x1, y1))
    return tuple(out)


def match_rules(ds: Dataset) -> list[RuleMatch]:
    """Every ``deid`` pixel filter rule that matches ``ds`` (its header, as de-identified).

    The rules read a score of top-level attributes (:func:`_rule_fields`): the instances of a series
    mostly agree on them, so the matches (and what deid said while matching) are kept per distinct
    set of their values, in this process's memory only (:data:`RULE_CACHE_SIZE` sets at most). A set
    not seen before (a window width that changes with each slice) is evaluated term by term, each
    term's outcome kept per value of the one attribute it reads (:data:`TERM_CACHE_SIZE`)."""
    values = {f: _value_key(ds, f) for f in _rule_fields()}
    key = tuple(values.values())
    known = _matched.get(key)
    if known is None:
        # an enclosing ingest capture counts deid's messages; alone they are dropped
        with diagnostics.capture() as said, quiet_deid():
            out = [rule.match for rule in _rules() if _flag(ds, values, rule)]
        if len(_matched) >= RULE_CACHE_SIZE:
            _matched.clear()
        known = _matched[key] = (tuple(out), said)
    else:
        enclosing = diagnostics.current()
        if enclosing is not None:
            enclosing.merge(known[1])  # the same messages, counted for this file too
    return list(known[0])


#: Distinct sets of rule attribute values whose matches are kept (a worker's memory, never written).
RULE_CACHE_SIZE = 4096
_matched: dict[tuple[str, ...], tuple[tuple[RuleMatch, ...], diagnostics.Capture]] = {}
#: Filter terms (action, attribute, operand, the attribute's value) whose outcomes are kept.
TERM_CACHE_SIZE = 16384
_terms: dict[tuple[str, str, str | None, str], tuple[bool, diagnostics.Capture | None]] = {}


@cache
def _rule_fields() -> tuple[str, ...]:
    """Every attribute a rule's filter reads (``deid``'s filters read ``dataset.get(field)``)."""
    return tuple(
        sorted(
            {
                field
                for items in _filters().values()
                for item in items
                for group in item.get("filters") or []
                for field in group["field"]
            }
        )
    )


def _value_key(ds: Dataset, field: str) -> str:
    """What deid's filters can tell of ``field`` in ``ds``: absent, present without a value, or its value."""
    name: str | int = int(field, 0) if "0x" in field else field
    if isinstance(name, str) and tag_for_keyword(name) is None:
        return "<unknown>"  # a misspelt keyword in a rule: deid's get() finds nothing, in any file
    try:
        if name not in ds:
            return "<absent>"
        value = ds.get(name)
    except Exception:  # a value that does not read: the filters see the same failure, whatever the file
        return "<unreadable>"
    return "<none>" if value is None else f"{type(value).__name__}:{value!r}"


def rule_labels() -> list[str]:
    """The labels of every ``deid`` pixel filter rule (the ``label`` of :func:`match_rules`' matches)."""
    return [_label(item) for items in _filters().values() for item in items]


def _label(item: dict[str, Any]) -> str:
    return str(item.get("name", "")).removeprefix("LABEL").split("#")[0].strip()


def rule_risk(ds: Dataset) -> str | None:
    """``deid_rule:<group>:<label>`` of the first graylist/blacklist rule matching ``ds``, or None."""
    for m in match_rules(ds):
        if m.group in RISK_GROUPS and m.evidence:
            return f"deid_rule:{m.group}:{m.label}"
    return None


def find_regions(ds: Dataset) -> tuple[str, list[Box]] | None:
    """(reason, boxes to blank) from the matching rules that know the regions, or None.

    A rule region of ``all`` becomes the whole image (``Rows`` x ``Columns``).
    """
    boxes: list[Box] = []
    labels: list[str] = []
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    for m in match_rules(ds):
        if m.group not in RISK_GROUPS or not m.regions:
            continue
        labels.append(m.label)
        for region in m.regions:
            boxes.append((0, 0, cols, rows) if region == FULL_IMAGE else region)  # type: ignore[arg-type]
    if not boxes:
        return None
    return "deid_rule:" + "+".join(dict.fromkeys(labels)), boxes
