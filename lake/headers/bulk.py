"""Large binary values of a de-identified header: kept in the ``bulk`` table, referenced by URI.

The DICOM JSON model (PS3.18 F.2.6) carries a binary value either inline (``InlineBinary``, base64)
or by reference (``BulkDataURI``). ``header_json`` inlines values up to :data:`INLINE_MAX_BYTES`
(1 KiB of base64, as pydicom's threshold counts it) and references the others as
``bulk:<sha256 hex>``: the row of the ``bulk`` table with the same SOPInstanceUID and ``sha256``
(:func:`lake.catalog.lookup.bulk_values`). LUT data, overlays, ICC profiles, waveforms and
encapsulated documents a profile keeps are what lands here; the engine has already removed what
the profile removes (this module sees the de-identified dataset only).

Never bulk: Pixel Data at any depth (the frames are in the Zarr store; an icon's pixels inside a
sequence are omitted). Values over the caps (:class:`lake.config.BulkSettings`) are omitted with
``lake:bulkdata-omitted``; each omission is counted per attribute and reason (``Plan.counts``, which
the ingest adds to ``reports/deid-RUN.json``), never with a value.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydicom import Dataset
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.valuerep import AMBIGUOUS_VR, BYTES_VR, VR

from lake.headers.bulk_uri import BULK_OMITTED, BULK_SCHEME

#: Binary values up to this many bytes are inlined in header_json (pydicom's 1024 base64 characters).
INLINE_MAX_BYTES = (1024 // 4) * 3
#: pydicom's bulk threshold giving :data:`INLINE_MAX_BYTES`.
BULK_DATA_THRESHOLD = 1024
PIXEL_TAGS = frozenset((0x7FE00010, 0x7FE00008, 0x7FE00009))
#: The VRs pydicom writes as InlineBinary / BulkDataURI.
BINARY_VRS = frozenset(BYTES_VR | AMBIGUOUS_VR) - {VR.US_SS}


class OmitReason:
    VALUE_CAP = "bulk_omitted_value_cap"
    INSTANCE_CAP = "bulk_omitted_instance_cap"
    PIXEL_DATA = "bulk_omitted_pixel_data"
    STORED = "bulk_stored"


@dataclass(frozen=True)
class BulkValue:
    """One large binary value of a header (PHI-free names; ``value`` is de-identified data)."""

    tag_path: str  # 00283010[0].00283006
    keyword_path: str  # VOILUTSequence[0].LUTData
    vr: str
    value: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.value).hexdigest()

    @property
    def uri(self) -> str:
        return BULK_SCHEME + self.sha256


@dataclass
class Plan:
    """What :func:`plan` decided for each large value: kept (``values``) or omitted (``counts``)."""

    values: list[BulkValue] = field(default_factory=list)
    uris: dict[int, str] = field(default_factory=dict)  # id(DataElement) -> BulkDataURI
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (attribute, reason)
    omitted: int = 0

    @property
    def bytes(self) -> int:
        return sum(len(v.value) for v in self.values)

    def uri_for(self, elem: DataElement) -> str:
        return self.uris.get(id(elem), BULK_OMITTED)


def _name(tag: int) -> str:
    return keyword_for_tag(tag) or f"{tag:08X}"


def large_binary(ds: Dataset, tags: str = "", keywords: str = "") -> Iterator[tuple[str, str, DataElement]]:
    """(tag path, keyword path, element) of every binary value over :data:`INLINE_MAX_BYTES`, any depth.

    Elements are read with ``ds[tag]`` as :meth:`Dataset.to_json_dict` reads them, so the objects
    yielded are the ones its bulk handler receives.
    """
    for tag in list(ds.keys()):
        elem = ds[tag]
        vr = elem.VR
        if vr == VR.SQ:
            if elem.value:  # the paths are named only where they are used (a keyword lookup is not free)
                tag_path, keyword_path = f"{tags}{int(tag):08X}", f"{keywords}{_name(int(tag))}"
                for i, item in enumerate(elem.value):
                    yield from large_binary(item, f"{tag_path}[{i}].", f"{keyword_path}[{i}].")
        elif vr in BINARY_VRS and isinstance(elem.value, bytes) and len(elem.value) > INLINE_MAX_BYTES:
            yield f"{tags}{int(tag):08X}", f"{keywords}{_name(int(tag))}", elem


def plan(ds: Dataset, max_value_bytes: int, max_instance_bytes: int) -> Plan:
    """Choose the values kept in bulk, in header order, within the per-value and per-instance caps.

    Top-level pixel data is expected to be removed by the caller (it never reaches the header).
    """
    out = Plan()
    total = 0
    for tag_path, keyword_path, elem in large_binary(ds):
        attribute = _name(int(elem.tag))
        size = len(elem.value)
        if int(elem.tag) in PIXEL_TAGS:
            reason = OmitReason.PIXEL_DATA
        elif size > max_value_bytes:
            reason = OmitReason.VALUE_CAP
        elif total + size > max_instance_bytes:
            reason = OmitReason.INSTANCE_CAP
        else:
            value = BulkValue(tag_path, keyword_path, str(elem.VR), bytes(elem.value))
            out.values.append(value)
            out.uris[id(elem)] = value.uri
            out.counts[(attribute, OmitReason.STORED)] += 1
            total += size
            continue
        out.counts[(attribute, reason)] += 1
        out.omitted += 1
    return out
