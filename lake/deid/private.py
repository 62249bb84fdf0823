"""Private elements kept under the Retain Safe Private option (``schemas/deid/private-safelist.toml``).

A safelisted slot is trusted only as far as its value looks like what the slot is for: the VR,
VM and value pattern the safelist states, text the patient's cleaner finds nothing in, numbers
that are finite and whose bytes do not spell text, and binary values only where the slot is
binary (Siemens CSA, re-written by :mod:`lake.deid.csa`; the GE Protocol Data Block, re-written by
:mod:`lake.deid.ge_protocol`). Everything else is dropped with a reason code (``X-safelist-vr``,
``-vm``, ``-pattern``, ``-text``, ``-binary``, ``-un``, ``X-csa-unparsable``,
``X-ge-protocol-unparsable``), never with its value.
"""

from __future__ import annotations

import math
import re
import struct
import tomllib
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

from lake.deid.csa import CsaError, CsaRule, ProtocolRule, Vouchers, filter_header
from lake.deid.engine import PrivateRule
from lake.deid.ge_protocol import GeProtocolError, GeProtocolRule, filter_block
from lake.errors import ConfigError
from lake.resources import Traversable, schema_file

if TYPE_CHECKING:
    from lake.deid.clean import TextCleaner

SAFELIST_PATH = schema_file("deid", "private-safelist.toml")  # package data (lake.resources)

BINARY_VRS = frozenset({"OB", "OW", "UN", "OF", "OD", "OL", "OV"})
TEXT_VRS = frozenset({"AE", "CS", "LO", "SH", "LT", "ST", "UT", "UC"})
NEVER_SAFE_VRS = frozenset({"DA", "DT", "TM", "PN", "UI", "SQ", "UR", "AT"})
NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}
DEFAULT_PATTERNS = {"DS": r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", "IS": r"[-+]?\d+"}
BINARY_KINDS = frozenset({"csa", "ge-protocol"})
_TEXT_RUN = re.compile(rb"[A-Za-z]{5,}")  # a word spelt in the bytes of numbers
# Bytes of unknown VR read as numbers: stricter, as text (names, dates) parses as numbers too.
_UN_TEXT_RUN = re.compile(rb"[A-Za-z0-9]{4,}")
_UN_RANGE = (1e-6, 1e7)  # text read as FD/FL lands far outside the magnitudes of acquisition values
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True)
class SafePrivate(PrivateRule):
    """A safelist entry with what its value must look like (see the file's header for each field)."""

    vr: str = ""
    also_vr: tuple[str, ...] = ()
    vm: str = "1"
    pattern: str | None = None
    binary: str | None = None
    name: str = ""
    why: str = ""

    @property
    def vrs(self) -> tuple[str, ...]:
        return (self.vr, *self.also_vr) if self.vr else ()


def _read(path: Traversable) -> dict[str, list[dict[str, object]]]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the private safelist {path}: {exc}") from exc


def _vm_ok(spec: str) -> bool:
    return re.fullmatch(r"\d+(?:-(?:\d+|\d*n))?", spec) is not None


def _pattern(path: Traversable, entry: object, pattern: object) -> str | None:
    if pattern is None:
        return None
    try:
        re.compile(str(pattern))
    except re.error as exc:
        raise ConfigError(f"{path}: entry {entry!r} has an invalid pattern: {exc}") from exc
    return str(pattern)


@cache
def load_safelist(path: Traversable = SAFELIST_PATH) -> tuple[SafePrivate, ...]:
    """Rules ``(group, creator, element byte)`` with VR, VM and pattern; each entry documents why."""
    rules = []
    for entry in _read(path).get("elements", []):
        try:
            group = int(str(entry["group"]), 16)
            element = int(str(entry["element"]), 16)
            creator = str(entry["creator"])
            vr = str(entry["vr"])
            why = str(entry["why"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(
                f"{path}: malformed safelist entry {entry!r} (needs group, creator, element, vr, why)"
            ) from exc
        if group % 2 == 0 or not 0 <= element <= 0xFF:
            raise ConfigError(f"{path}: entry {entry!r} is not a private element (odd group, element byte 00-FF)")
        also = tuple(str(v) for v in entry.get("also_vr", []))  # type: ignore[attr-defined]
        vm = str(entry.get("vm", "1"))
        binary = entry.get("binary")
        pattern = _pattern(path, entry, entry.get("pattern"))
        if not _vm_ok(vm):
            raise ConfigError(f"{path}: entry {entry!r} has vm {vm!r} (write 1, 3, 1-n or 2-2n)")
        if {vr, *also} & NEVER_SAFE_VRS:
            raise ConfigError(f"{path}: entry {entry!r}: dates, names, UIDs, URLs and sequences are never safelisted")
        if binary is not None and (binary not in BINARY_KINDS or vr not in BINARY_VRS):
            raise ConfigError(f"{path}: entry {entry!r}: binary must be one of {sorted(BINARY_KINDS)} on an OB slot")
        if binary is None and {vr, *also} & BINARY_VRS:
            raise ConfigError(f"{path}: entry {entry!r} has a binary VR: say binary = one of {sorted(BINARY_KINDS)}")
        if {vr, *also} & TEXT_VRS and pattern is None:
            raise ConfigError(f"{path}: text entry {entry!r} needs a pattern its values must match")
        rules.append(
            SafePrivate(
                group,
                creator,
                element,
                vr=vr,
                also_vr=also,
                vm=vm,
                pattern=pattern,
                binary=str(binary) if binary is not None else None,
                name=str(entry.get("name", "")),
                why=why,
            )
        )
    return tuple(rules)


@cache
def load_csa_rules(path: Traversable = SAFELIST_PATH) -> tuple[dict[str, CsaRule], dict[str, ProtocolRule]]:
    """The ``[[csa]]`` element allow-list by name and the ``[[ascconv]]`` string lines by key."""
    doc = _read(path)
    csa: dict[str, CsaRule] = {}
    protocol: dict[str, ProtocolRule] = {}
    try:
        for entry in doc.get("csa", []):
            header = str(entry["header"])
            if header not in ("image", "series"):
                raise ConfigError(f"{path}: csa entry {entry!r}: header is image or series")
            pattern = _pattern(path, entry, entry["pattern"]) or ""
            csa[str(entry["name"])] = CsaRule(header, str(entry["name"]), pattern, str(entry["why"]))
        for entry in doc.get("ascconv", []):
            pattern = _pattern(path, entry, entry["pattern"]) or ""
            protocol[str(entry["key"])] = ProtocolRule(str(entry["key"]), pattern, str(entry["why"]))
    except KeyError as exc:
        raise ConfigError(f"{path}: csa/ascconv entry without {exc}") from exc
    return csa, protocol


@cache
def load_ge_protocol_rules(path: Traversable = SAFELIST_PATH) -> dict[str, GeProtocolRule]:
    """The ``[[ge_protocol]]`` allow-list of GE Protocol Data Block lines by key."""
    rules: dict[str, GeProtocolRule] = {}
    try:
        for entry in _read(path).get("ge_protocol", []):
            pattern = _pattern(path, entry, entry["pattern"]) or ""
            rules[str(entry["key"])] = GeProtocolRule(str(entry["key"]), pattern, str(entry["why"]))
    except KeyError as exc:
        raise ConfigError(f"{path}: ge_protocol entry without {exc}") from exc
    return rules


def _values(elem: DataElement) -> list[object]:
    value = elem.value
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue | list | tuple) else [value]


def _vm_matches(spec: str, n: int) -> bool:
    low, _, high = spec.partition("-")
    if not high:
        return n == int(low)
    if high.endswith("n"):
        step = int(high[:-1] or 1)
        return n >= int(low) and n % step == 0
    return int(low) <= n <= int(high)


def _reinterpret(elem: DataElement, vr: str) -> DataElement | None:
    """A UN element as ``vr`` when its bytes are a valid little-endian value of it (implicit VR is LE)."""
    raw = elem.value if isinstance(elem.value, bytes) else None
    if raw is None:
        return None
    if vr in NUMBER_FORMATS:
        size = struct.calcsize(NUMBER_FORMATS[vr])
        if not raw or len(raw) % size:
            return None
        numbers = list(struct.unpack(f"<{len(raw) // size}{NUMBER_FORMATS[vr]}", raw))
        low, high = _UN_RANGE
        if _UN_TEXT_RUN.search(raw) or not all(n == 0 or low <= abs(n) <= high for n in numbers):
            return None
        return DataElement(elem.tag, vr, numbers if len(numbers) > 1 else numbers[0])
    try:
        text = raw.decode("ascii").rstrip("\x00 ")
    except UnicodeDecodeError:
        return None
    if not _PRINTABLE.fullmatch(text):
        return None
    parts = [p.strip() for p in text.split("\\")]
    try:  # pydicom validates DS and IS values as it builds them
        return DataElement(elem.tag, vr, parts if len(parts) > 1 else parts[0])
    except (ValueError, OverflowError):
        return None


def _numbers_ok(vr: str, values: list[object]) -> bool:
    try:
        numbers = [float(v) for v in values]  # type: ignore[arg-type]
        packed = struct.pack(f"<{len(values)}{NUMBER_FORMATS[vr]}", *values)
    except (TypeError, ValueError, struct.error):
        return False
    return all(math.isfinite(n) for n in numbers) and _TEXT_RUN.search(packed) is None


def vouches(cleaner: TextCleaner, text: str) -> bool:
    """True when the patient's text cleaner finds nothing to clean in ``text`` (identifiers, dates, phones)."""
    return not cleaner.contains_identifier(text)


#: A number with fewer digits than this is a measurement (``1``, ``0.5``, ``120``), never taken for an
#: identifier: a StudyID ``1`` must not remove every ``1`` of a CSA header (PhaseEncodingDirectionPositive).
MIN_IDENTIFIER_DIGITS = 6


def _knows_nothing(cleaner: TextCleaner, text: str) -> bool:
    """For numbers: not one of this patient's identifiers (generic digit-run patterns would drop them all);
    numbers too short to be a distinctive identifier always pass."""
    if sum(c.isdigit() for c in text) < MIN_IDENTIFIER_DIGITS:
        return True
    return cleaner.remove_known(text) == text


def _vouchers(cleaner: TextCleaner) -> Vouchers:
    return Vouchers(lambda v: vouches(cleaner, v), lambda v: _knows_nothing(cleaner, v))


def vet(
    elem: DataElement, rule: PrivateRule, cleaner: TextCleaner, counts: Counter[tuple[str, str]]
) -> DataElement | str:
    """The element to keep (reinterpreted from UN, or CSA or GE protocol re-written), or the reason code to drop it."""
    safe = rule if isinstance(rule, SafePrivate) else SafePrivate(rule.group, rule.creator, rule.element)
    vr = elem.VR
    if safe.binary == "ge-protocol":
        if vr not in ("OB", "UN") or not isinstance(elem.value, bytes):
            return "X-safelist-vr"
        try:
            block = filter_block(elem.value, load_ge_protocol_rules(), _vouchers(cleaner), counts)
        except GeProtocolError:
            return "X-ge-protocol-unparsable"
        return DataElement(elem.tag, "OB", block)
    if safe.binary == "csa":
        if vr not in ("OB", "UN") or not isinstance(elem.value, bytes):
            return "X-safelist-vr"
        csa_rules, protocol_rules = load_csa_rules()
        header = "image" if safe.element == 0x10 else "series"
        try:
            data = filter_header(
                elem.value,
                header,
                csa_rules,
                protocol_rules,
                _vouchers(cleaner),
                counts,
            )
        except CsaError:
            return "X-csa-unparsable"
        return DataElement(elem.tag, "OB", data)
    if vr == "UN" and safe.vr and safe.vr not in BINARY_VRS:
        converted = _reinterpret(elem, safe.vr)
        if converted is None:
            return "X-safelist-un"
        elem, vr = converted, safe.vr
    if vr in BINARY_VRS:
        return "X-safelist-binary"
    if vr in NEVER_SAFE_VRS or (safe.vrs and vr not in safe.vrs):
        return "X-safelist-vr"
    values = _values(elem)
    if values and not _vm_matches(safe.vm, len(values)):
        return "X-safelist-vm"
    if vr in NUMBER_FORMATS:
        return elem if not values or _numbers_ok(vr, values) else "X-safelist-pattern"
    pattern = safe.pattern or DEFAULT_PATTERNS.get(vr)
    texts = [str(v).strip() for v in values]
    if pattern is not None and not all(re.fullmatch(pattern, t) for t in texts):
        return "X-safelist-pattern"
    if vr in DEFAULT_PATTERNS:
        return elem if all(_knows_nothing(cleaner, t) for t in texts) else "X-safelist-text"
    if not all(vouches(cleaner, t) for t in texts):
        return "X-safelist-text"
    return elem
