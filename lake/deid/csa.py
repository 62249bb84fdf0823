"""Siemens CSA headers (``SIEMENS CSA HEADER`` (0029,xx10) image, (0029,xx20) series): parse, filter, write.

CSA2 layout (little endian; the format SPM, nibabel and dcm2niix read): ``"SV10"``, 4 unused bytes,
``uint32`` element count, ``uint32`` 77; then per element a 84-byte record (name ``64s``, VM ``i``,
VR ``4s``, syngo data type ``i``, item count ``i``, 77 or 205 ``i``) followed by its items, each a
16-byte record (``4i``: length, length, 77 or 205, length) and the item bytes padded to 4 bytes.

The filter keeps an explicit allow-list of element names (``[[csa]]`` in
``schemas/deid/private-safelist.toml``) whose values pass a pattern and the patient's text
cleaner, and rewrites the series header's ``MrPhoenixProtocol`` to its ASCCONV block with only
numeric lines and allow-listed string lines (``[[ascconv]]``). Kept elements are copied byte for
byte, so readers see the original values; the result is valid CSA2 that dcm2niix still reads.
Older CSA1 headers (no ``SV10``) are not parsed and so are never kept.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lake.deid.dates import COMPACT_DATE
from lake.errors import LakeError

SIGNATURE = b"SV10"
CHECK = 77
_HEAD = struct.Struct("<4s4sII")
_ELEMENT = struct.Struct("<64si4siii")
_ITEM = struct.Struct("<4i")
MAX_ELEMENTS = 1000  # nibabel's bound; real headers hold about 100
MAX_ITEMS = 1000
PROTOCOL = "MrPhoenixProtocol"
_ASC_BEGIN = re.compile(r"### ASCCONV BEGIN(?: [A-Za-z]+=[A-Za-z0-9@%/_.]+)* ###")
_ASC_END = "### ASCCONV END ###"
_ASC_LINE = re.compile(r"([A-Za-z_][\w.\[\]]*)\s*=\s*(.*?)\s*")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|0x[0-9A-Fa-f]+")
_QUOTED = re.compile(r'""([^"]*)""|"([^"]*)"')


class CsaError(LakeError, ValueError):
    """A CSA header that is not well-formed CSA2 (it is then dropped, never kept unparsed)."""


@dataclass(frozen=True)
class CsaElement:
    """One CSA element: its record fields, item data (``None`` for an item past the data) and raw bytes."""

    name: str
    vm: int
    vr: str
    syngodt: int
    status: int  # the record's last field: 77 with data, 205 without
    items: tuple[bytes, ...]
    raw: bytes  # the element record and its items exactly as read

    def values(self) -> list[str]:
        """The non-empty item values as text (null padding and trailing spaces stripped)."""
        out = [item.split(b"\x00", 1)[0].decode("latin-1").strip() for item in self.items]
        return [v for v in out if v]


@dataclass(frozen=True)
class CsaHeader:
    unused: bytes
    elements: tuple[CsaElement, ...]


def is_csa2(data: bytes) -> bool:
    return data[:4] == SIGNATURE


def parse(data: bytes) -> CsaHeader:
    """Parse a CSA2 header; raises :class:`CsaError` on anything that is not well-formed."""
    if len(data) < _HEAD.size or not is_csa2(data):
        raise CsaError("not a CSA2 header (no SV10 signature): CSA1 and other layouts are not kept")
    _sig, unused, count, check = _HEAD.unpack_from(data)
    if check != CHECK or not 0 < count <= MAX_ELEMENTS:
        raise CsaError(f"CSA2 header with {count} elements and check {check} (want 1-{MAX_ELEMENTS} and {CHECK})")
    pos = _HEAD.size
    elements = []
    try:
        for _ in range(count):
            start = pos
            name_b, vm, vr_b, syngodt, n_items, status = _ELEMENT.unpack_from(data, pos)
            pos += _ELEMENT.size
            if not 0 <= n_items <= MAX_ITEMS:
                raise CsaError(f"CSA element with {n_items} items (at most {MAX_ITEMS})")
            items = []
            for _ in range(n_items):
                length = _ITEM.unpack_from(data, pos)[1]
                pos += _ITEM.size
                if length < 0 or pos + length > len(data):
                    raise CsaError(f"CSA item of {length} bytes runs past the header's {len(data)} bytes")
                items.append(data[pos : pos + length])
                pos += (length + 3) // 4 * 4
            if pos > len(data):
                raise CsaError("CSA item padding runs past the end of the header")
            elements.append(CsaElement(_cstr(name_b), vm, _cstr(vr_b), syngodt, status, tuple(items), data[start:pos]))
    except struct.error as exc:
        raise CsaError(f"CSA header truncated: {exc}") from exc
    return CsaHeader(unused, tuple(elements))


def _cstr(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1")


def write(header: CsaHeader) -> bytes:
    """CSA2 bytes for ``header`` (elements copied as their raw bytes); 4 zero bytes end it, as syngo writes."""
    body = b"".join(e.raw for e in header.elements)
    return _HEAD.pack(SIGNATURE, header.unused, len(header.elements), CHECK) + body + b"\x00" * 4


def element(name: str, vm: int, vr: str, syngodt: int, items: list[bytes], n_items: int | None = None) -> CsaElement:
    """A new element with ``items`` (padded with empty items to ``n_items``, as syngo writes 6 for VM 1)."""
    n = max(len(items), n_items or 0)
    status = CHECK if any(items) else 205
    parts = [_ELEMENT.pack(name.encode("latin-1"), vm, vr.encode("latin-1"), syngodt, n, status)]
    for i in range(n):
        data = items[i] if i < len(items) else b""
        parts.append(_ITEM.pack(len(data), len(data), CHECK if data else 205, len(data)))
        parts.append(data + b"\x00" * ((4 - len(data) % 4) % 4))
    raw = b"".join(parts)
    return CsaElement(name, vm, vr, syngodt, status, tuple(items) + (b"",) * (n - len(items)), raw)


@dataclass(frozen=True)
class CsaRule:
    """An allow-listed CSA element: which header, its name, a pattern each value must match, why."""

    header: str  # "image" or "series"
    name: str
    pattern: str
    why: str


@dataclass(frozen=True)
class ProtocolRule:
    """An allow-listed string line of the ASCCONV protocol (key with array indices as ``[]``)."""

    key: str
    pattern: str
    why: str


Vouch = Callable[[str], bool]  # True when the patient's text cleaner finds nothing in the value


@dataclass(frozen=True)
class Vouchers:
    """How values are checked: ``text`` for words, ``number`` for numbers (only the patient's own identifiers)."""

    text: Vouch
    number: Vouch

    def __call__(self, value: str) -> bool:
        return self.number(value) if _NUMBER.fullmatch(value) else self.text(value)


def filter_header(
    data: bytes,
    header: str,
    rules: Mapping[str, CsaRule],
    protocol_rules: Mapping[str, ProtocolRule],
    vouch: Vouchers,
    counts: Counter[tuple[str, str]],
) -> bytes:
    """The CSA ``data`` with only allow-listed elements whose every value passes; counts what was dropped.

    Raises :class:`CsaError` when ``data`` is not CSA2 (the caller drops the element).
    """
    parsed = parse(data)
    label = "SiemensCSAImageHeader" if header == "image" else "SiemensCSASeriesHeader"
    kept = []
    for elem in parsed.elements:
        rule = rules.get(elem.name)
        if rule is None or rule.header != header:
            counts[(label, "X-csa-element")] += 1
            continue
        if elem.name == PROTOCOL:
            cleaned = _protocol(elem, protocol_rules, vouch, counts, label)
            if cleaned is None:
                counts[(label, "X-csa-protocol")] += 1
                continue
            elem = cleaned
        elif not all(re.fullmatch(rule.pattern, v) and vouch(v) for v in elem.values()):
            counts[(label, "X-csa-value")] += 1
            continue
        kept.append(elem)
        counts[(label, "K-csa-element")] += 1
    return write(CsaHeader(parsed.unused, tuple(kept)))


def _protocol(
    elem: CsaElement,
    rules: Mapping[str, ProtocolRule],
    vouch: Vouchers,
    counts: Counter[tuple[str, str]],
    label: str,
) -> CsaElement | None:
    """``MrPhoenixProtocol`` reduced to its ASCCONV block: numeric lines and allow-listed string lines.

    The XProtocol part (protocol names, UI strings, sequence trees) is dropped whole; numeric
    values that look like a date or equal a patient identifier are dropped too.
    """
    values = [item for item in elem.items if item]
    if len(values) != 1:
        return None
    text = values[0].split(b"\x00", 1)[0].decode("latin-1")
    begin = _ASC_BEGIN.search(text)
    end = text.find(_ASC_END, begin.end()) if begin else -1
    if begin is None or end < 0:
        return None
    out = [begin.group(0)]
    for line in text[begin.end() : end].splitlines():
        if not line.strip():
            continue
        m = _ASC_LINE.fullmatch(line)
        if m is None:
            counts[(label, "X-protocol-line")] += 1
            continue
        key, value = m.groups()
        if _keep_line(key, value, rules, vouch):
            out.append(line)
        else:
            counts[(label, "X-protocol-line")] += 1
    out.append(_ASC_END)
    body = ("\n".join(out) + "\n").encode("latin-1")
    return element(elem.name, elem.vm, elem.vr, elem.syngodt, [body], n_items=len(elem.items))


def _keep_line(key: str, value: str, rules: Mapping[str, ProtocolRule], vouch: Vouchers) -> bool:
    if _NUMBER.fullmatch(value):
        return not COMPACT_DATE.search(value) and vouch.number(value)
    rule = rules.get(re.sub(r"\[\d+\]", "[]", key))
    quoted = _QUOTED.fullmatch(value)
    if rule is None or quoted is None:
        return False
    string = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
    return re.fullmatch(rule.pattern, string) is not None and vouch.text(string)
