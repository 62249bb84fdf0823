"""A few top-level attributes of a DICOM file, read from its bytes without parsing the rest.

The ingest cuts its units of work by what each file will cost a worker (:func:`lake.ingest.run.work_cost`),
which needs eight attributes of groups 0008 to 0028 before any worker sees the file. pydicom's
reader decodes every element header up to the pixel data to find them (about half a millisecond a
file, in the ingest process); this walks the element headers only as far as the last attribute
asked for, skipping values (sequences of undefined length item by item), and hands pydicom the raw
elements it found, so that their values convert exactly as ``dcmread`` converts them.

Only the transfer syntaxes almost every file uses are walked (little endian, explicit VR or
implicit; encapsulated pixel data): :func:`peek` returns None for anything else (big endian,
deflated, no preamble, a malformed header), and the caller reads the file with pydicom instead.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from pydicom import Dataset
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import BaseTag

IMPLICIT_LITTLE = "1.2.840.10008.1.2"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
#: VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 7.1.2).
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
MAX_DEPTH = 16

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TAG = struct.Struct("<HH")


class _Unreadable(Exception):
    """Not a header this walker reads: the caller falls back to pydicom."""


def peek(data: bytes, tags: Iterable[int]) -> Dataset | None:
    """The top-level elements of ``tags`` that ``data`` holds, raw (pydicom converts them when
    read); None when the file is not one this walker reads (see the module)."""
    wanted = frozenset(int(t) for t in tags)
    try:
        start, syntax = _file_meta(data)
        if syntax == BIG_ENDIAN or syntax in DEFLATED:
            return None
        implicit = syntax == IMPLICIT_LITTLE
        found = _top_level(data, start, implicit, wanted, max(wanted))
    except (_Unreadable, struct.error, IndexError):
        return None
    return Dataset(found)


def _file_meta(data: bytes) -> tuple[int, str]:
    """Where the dataset starts after the preamble and file meta group, and its transfer syntax."""
    if data[128:132] != b"DICM":
        raise _Unreadable
    pos, syntax = 132, None
    while pos + 8 <= len(data):
        if _TAG.unpack_from(data, pos)[0] != 0x0002:
            break  # the dataset, which may be implicit VR
        tag, _vr, length, header = _header(data, pos, implicit=False)  # the meta group is explicit VR
        if length == UNDEFINED:
            raise _Unreadable
        if tag == 0x00020010:
            syntax = data[pos + header : pos + header + length].decode("ascii").strip("\0 ")
        pos += header + length
    if not syntax:
        raise _Unreadable
    return pos, syntax


def _header(data: bytes, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, value length, header length) of the element at ``pos``."""
    group, element = _TAG.unpack_from(data, pos)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:  # items and delimiters have no VR in either encoding
        return tag, None, _U32.unpack_from(data, pos + 4)[0], 8
    vr = data[pos + 4 : pos + 6]
    if not (len(vr) == 2 and vr.isalpha() and vr.isupper()):
        raise _Unreadable  # implicit VR in an explicit VR file, or not a header at all
    if vr in LONG_VRS:
        return tag, vr, _U32.unpack_from(data, pos + 8)[0], 12
    return tag, vr, _U16.unpack_from(data, pos + 6)[0], 8


def _top_level(
    data: bytes, pos: int, implicit: bool, wanted: frozenset[int], last: int
) -> dict[BaseTag, DataElement | RawDataElement]:
    found: dict[BaseTag, DataElement | RawDataElement] = {}
    while pos + 8 <= len(data):
        tag, vr, length, header = _header(data, pos, implicit)
        if tag > last:
            break
        value_at = pos + header
        if length == UNDEFINED:
            if tag in wanted:
                raise _Unreadable  # a sequence asked for: pydicom reads it
            pos = _skip_undefined(data, value_at, implicit or vr == b"UN", 0)  # UN: implicit VR inside (CP-246)
            continue
        if value_at + length > len(data):
            raise _Unreadable  # truncated: the worker rejects the file, pydicom says how
        if tag in wanted:
            value = data[value_at : value_at + length]
            found[BaseTag(tag)] = RawDataElement(
                BaseTag(tag), vr.decode() if vr else None, length, value, value_at, implicit, True
            )
        pos = value_at + length
    return found


def _skip_undefined(data: bytes, pos: int, implicit: bool, depth: int) -> int:
    """Past the sequence (or item) of undefined length whose value starts at ``pos``: the
    position after its delimiter."""
    if depth > MAX_DEPTH:
        raise _Unreadable
    while pos + 8 <= len(data):
        tag, _vr, length, header = _header(data, pos, implicit)
        pos += header
        if tag in (SEQUENCE_END, ITEM_END):
            return pos
        if length == UNDEFINED:  # an item, or a nested sequence, of undefined length
            pos = _skip_undefined(data, pos, implicit or _vr == b"UN", depth + 1)
            continue
        pos += length
    raise _Unreadable  # no delimiter before the end of the file
