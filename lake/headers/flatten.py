"""A de-identified Dataset to one table row: typed promoted columns plus the full DICOM JSON header."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.tag import BaseTag

from lake.config import BulkSettings
from lake.headers.bulk import BULK_DATA_THRESHOLD, PIXEL_TAGS, Plan, large_binary, plan
from lake.headers.geometry import frame_geometry
from lake.headers.json_model import json_dict
from lake.headers.schema import Column, TableSchema
from lake.headers.values import CONVERTERS


def resolve(ds: Dataset, path: str) -> Any:
    """Value at ``"A.B.C"`` (first item of each sequence on the way), or None."""
    node: Any = ds
    parts = path.split(".")
    for i, keyword in enumerate(parts):
        if not isinstance(node, Dataset):
            return None
        elem = node.get(keyword)
        if elem is None:
            return None
        value = elem.value if isinstance(elem, DataElement) else elem
        if i == len(parts) - 1:
            return value
        if not value:
            return None
        node = value[0]
    return None


def column_value(ds: Dataset, column: Column) -> Any:
    return _first_value(ds, CONVERTERS[column.type], _tag_paths(column.sources))


#: A column's source paths as tags, and its converter: what :func:`promoted_row` reads per instance.
_Compiled = tuple[str, Callable[[Any], Any], tuple[tuple[BaseTag, ...], ...]]
_COMPILED: dict[int, tuple[TableSchema, list[_Compiled]]] = {}


def _tag_paths(sources: tuple[str, ...]) -> tuple[tuple[BaseTag, ...], ...]:
    """``("A.B.C", ...)`` as tag tuples, looked up once per schema instead of once per element read."""
    paths = []
    for path in sources:
        tags = [tag_for_keyword(keyword) for keyword in path.split(".")]
        # a name that is no DICOM keyword never resolves (as in :func:`resolve`): the empty path, a null
        paths.append(() if None in tags else tuple(BaseTag(tag) for tag in tags if tag is not None))
    return tuple(paths)


def _compiled(schema: TableSchema) -> list[_Compiled]:
    entry = _COMPILED.get(id(schema))
    if entry is None or entry[0] is not schema:
        columns = [(c.name, CONVERTERS[c.type], _tag_paths(c.sources)) for c in schema.columns if not c.derived]
        entry = _COMPILED[id(schema)] = (schema, columns)
    return entry[1]


def _value_at(ds: Dataset, tags: tuple[BaseTag, ...]) -> Any:
    """:func:`resolve` with the path's tags already looked up."""
    node: Any = ds
    last = len(tags) - 1
    for i, tag in enumerate(tags):
        if not isinstance(node, Dataset) or tag not in node:
            return None
        value = node[tag].value
        if i == last:
            return value
        if not value:
            return None
        node = value[0]
    return None


def _first_value(ds: Dataset, convert: Callable[[Any], Any], paths: tuple[tuple[BaseTag, ...], ...]) -> Any:
    for tags in paths:
        try:
            value = convert(_value_at(ds, tags))
        except Exception:  # a malformed value is a null, never a rejected instance
            value = None
        if value is not None:
            return value
    return None


def age_in_years(age: str | None) -> float | None:
    """``045Y`` -> 45.0, ``006M`` -> 0.5, ``010W`` and ``003D`` likewise."""
    if not age or len(age) < 2 or not age[:-1].strip().isdigit():
        return None
    n = int(age[:-1])
    return {"Y": n, "M": n / 12, "W": n * 7 / 365.25, "D": n / 365.25}.get(age[-1].upper())


def promoted_row(ds: Dataset, schema: TableSchema) -> dict[str, Any]:
    """Values of every non-derived column of ``schema`` taken from ``ds``."""
    row = {name: _first_value(ds, convert, paths) for name, convert, paths in _compiled(schema)}
    row["SOPInstanceUID"] = str(ds.get("SOPInstanceUID", "") or "") or None
    row["PatientID"] = str(ds.get("PatientID", "") or "") or None
    names = {c.name for c in schema.columns}
    if "PatientAgeYears" in names:
        row["PatientAgeYears"] = age_in_years(row.get("PatientAge"))
    if "contrast_used" in names:
        row["contrast_used"] = contrast_used(ds)
    if "frame_slice_spacing" in names:
        # malformed per-frame positions leave the measures null, like any bad value
        with contextlib.suppress(Exception):
            row.update(frame_geometry(ds))
    return row


CONTRAST_KEYWORDS = (
    "ContrastBolusAgent",
    "ContrastBolusRoute",
    "ContrastBolusVolume",
    "ContrastBolusIngredient",
    "ContrastBolusAgentSequence",
    "ContrastBolusUsageSequence",
)


def contrast_used(ds: Dataset) -> bool:
    """True when the header records any contrast (classic attributes or enhanced usage sequence)."""
    # an empty value (type 2 attribute present but blank) does not mean contrast was given
    if any(bool(ds.get(k)) for k in CONTRAST_KEYWORDS):
        return True
    return bool(resolve(ds, "SharedFunctionalGroupsSequence.ContrastBolusUsageSequence"))


def header_and_bulk(ds: Dataset, caps: BulkSettings | None = None) -> tuple[str, Plan]:
    """The dataset (without pixel data) in the DICOM JSON model, and its large binary values.

    Binary values over 768 bytes (:data:`lake.headers.bulk.INLINE_MAX_BYTES`) are referenced by
    ``BulkDataURI``: ``bulk:<sha256>`` for those :func:`lake.headers.bulk.plan` keeps within
    ``caps`` (returned in the plan, for the ``bulk`` table), ``lake:bulkdata-omitted`` for the rest
    (all of them without ``caps``).
    """
    removed = {tag: ds[tag] for tag in PIXEL_TAGS if tag in ds}
    for tag in removed:
        del ds[tag]
    try:
        kept = plan(ds, caps.max_value_bytes, caps.max_instance_bytes) if caps is not None else Plan()
        if caps is None:
            kept.omitted = sum(1 for _ in large_binary(ds))
        model = json_dict(ds, BULK_DATA_THRESHOLD, kept.uri_for)
    finally:
        for tag, elem in removed.items():
            ds[tag] = elem
    return json.dumps(model, separators=(",", ":"), ensure_ascii=False), kept


def header_json(ds: Dataset) -> str:
    """The dataset (without pixel data) in the DICOM JSON model; binary values over 768 bytes omitted."""
    return header_and_bulk(ds)[0]
