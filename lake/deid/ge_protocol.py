"""GE Protocol Data Block (``GEMS_SERS_01`` (0025,xx1B)): decode, filter to an allow-list, re-encode.

Layout (as dcm2niix reads it, ``geProtocolBlock`` in ``nii_dicom_batch.cpp``): a ``uint32`` little
endian length, then that many bytes of gzip, padded to an even length; the gzip holds text lines
``KEY "value"`` (``SLICEORDER "1"``, ``IOPT "EPI, FMRI"``, ``SEDESC "..."``).

The scanner's block holds free text (the series description ``SEDESC``), a UID (``PDGMUID``) and,
in the gzip header itself, a file name made of the exam and series numbers (``Ex27018Ser4Rx``) and
the time it was written. The filter keeps only the lines whose key is allow-listed
(``[[ge_protocol]]`` in ``schemas/deid/private-safelist.toml``), in their original order, whose
value matches the key's pattern in full, does not look like a date and passes the patient's text
cleaner (numbers: is not one of the patient's identifiers). The result is re-encoded
deterministically: gzip without file name, mtime 0, so the same block always gives the same bytes.
Anything that is not this layout (other framing, a truncated stream, the XML blocks of newer
software, a block over :data:`MAX_TEXT` bytes) raises :class:`GeProtocolError`, and the caller
drops the element: a block is never kept raw.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from lake.deid.csa import Vouchers
from lake.deid.dates import COMPACT_DATE
from lake.errors import LakeError

LABEL = "GEProtocolDataBlock"
MAX_TEXT = 1 << 20  # real blocks inflate to about 3 KB; more is not a protocol block
_LENGTH = struct.Struct("<I")
_GZIP_MAGIC = b"\x1f\x8b\x08"
_LINE = re.compile(r'([A-Z][A-Z0-9_]{0,31}) "([^"\r\n]*)"')
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")


class GeProtocolError(LakeError, ValueError):
    """A Protocol Data Block that is not a length-prefixed gzip of ``KEY "value"`` lines (it is dropped)."""


@dataclass(frozen=True)
class GeProtocolRule:
    """An allow-listed key of the block: the pattern its value must match in full, and why it is kept."""

    key: str
    pattern: str
    why: str


def decode(data: bytes) -> list[str]:
    """The text lines of a Protocol Data Block; raises :class:`GeProtocolError` when it is not one."""
    if len(data) < _LENGTH.size + len(_GZIP_MAGIC):
        raise GeProtocolError(f"GE Protocol Data Block of {len(data)} bytes is too short")
    (length,) = _LENGTH.unpack_from(data)
    stream = data[_LENGTH.size : _LENGTH.size + length]
    if length > len(data) - _LENGTH.size or not stream.startswith(_GZIP_MAGIC):
        raise GeProtocolError("GE Protocol Data Block is not a length-prefixed gzip stream")
    try:
        text = _inflate(stream)
    except (OSError, EOFError, zlib.error) as exc:
        raise GeProtocolError(f"GE Protocol Data Block does not inflate: {type(exc).__name__}") from exc
    if text.lstrip().startswith("<"):
        raise GeProtocolError("GE Protocol Data Block holds XML (newer software), which is not parsed")
    return text.splitlines()


def _inflate(stream: bytes) -> str:
    """The gzip member's text, bounded by :data:`MAX_TEXT` (a small block must not inflate to gigabytes)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    raw = inflater.decompress(stream, MAX_TEXT + 1)
    if len(raw) > MAX_TEXT:
        raise GeProtocolError(f"GE Protocol Data Block inflates to over {MAX_TEXT} bytes")
    if not inflater.eof:
        raise EOFError("truncated gzip stream")
    return raw.decode("latin-1")


def encode(lines: list[str]) -> bytes:
    """A Protocol Data Block holding ``lines``: length prefix, gzip (no file name, mtime 0), even length."""
    stream = gzip.compress(("".join(f"{line}\n" for line in lines)).encode("latin-1"), compresslevel=9, mtime=0)
    block = _LENGTH.pack(len(stream)) + stream
    return block + b"\x00" * (len(block) % 2)


def parse(data: bytes) -> dict[str, str]:
    """``{KEY: value}`` of a block (the first line of each key); raises :class:`GeProtocolError`."""
    out: dict[str, str] = {}
    for line in decode(data):
        m = _LINE.fullmatch(line.strip())
        if m is not None:
            out.setdefault(m.group(1), m.group(2))
    return out


def filter_block(
    data: bytes, rules: Mapping[str, GeProtocolRule], vouch: Vouchers, counts: Counter[tuple[str, str]]
) -> bytes:
    """The block re-encoded with only its allow-listed lines whose value passes; counts kept and dropped lines.

    Raises :class:`GeProtocolError` when ``data`` is not a block, or when no line is kept (the caller
    drops the element; an empty block says nothing).
    """
    kept: list[str] = []
    seen: set[str] = set()
    for line in decode(data):
        if not line.strip():
            continue
        m = _LINE.fullmatch(line.strip())
        first = m is not None and m.group(1) not in seen  # readers (dcm2niix) take a key's first line
        if m is not None:
            seen.add(m.group(1))
        if m is None or not first or not _keep(m.group(1), m.group(2), rules, vouch):
            counts[(LABEL, "X-ge-protocol-line")] += 1
            continue
        kept.append(f'{m.group(1)} "{m.group(2)}"')
        counts[(LABEL, "K-ge-protocol-line")] += 1
    if not kept:
        raise GeProtocolError("GE Protocol Data Block has no allow-listed line")
    return encode(kept)


def _keep(key: str, value: str, rules: Mapping[str, GeProtocolRule], vouch: Vouchers) -> bool:
    rule = rules.get(key)
    if rule is None or re.fullmatch(rule.pattern, value) is None:
        return False
    if _NUMBER.fullmatch(value):
        return not COMPACT_DATE.search(value) and vouch.number(value)
    return not COMPACT_DATE.search(value) and vouch(value)
