"""SQL access to every retained attribute: DuckDB macros over ``instances.header_json``.

``header_json`` holds each instance's full de-identified header in the DICOM JSON model (PS3.18
F.2): an object keyed by 8-hex-digit tags, each element ``{"vr": ..., "Value": [...]}``, sequence
items nested the same way. The macros turn a keyword or tag path into a JSON path once per query
(keyword and tag lists held in session variables, which DuckDB folds into a constant while
binding) and extract with DuckDB's built-in JSON functions: with a literal path the
filter runs exactly as fast as a hand-written JSON path, and no extension or Python code runs per row.

Paths: ``Keyword``, ``(0029,1010)``, ``00291010`` or ``0029,1010``, joined with ``.`` through
sequences; a sequence step takes its first item unless it names one (``Seq[2]``, 0-based).

Why macros and not an ``elements`` table: see ``docs/tables.md`` (measured by
``benchmarks/headers.py``).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Macro:
    name: str
    parameters: str
    body: str
    description: str
    example: str


MACROS: tuple[Macro, ...] = (
    Macro(
        "dicom_tag",
        "attribute",
        "coalesce(getvariable('dicom_tag_list')[list_position(getvariable('dicom_keyword_list'), attribute)], "
        "upper(regexp_replace(attribute, '[(), ]', '', 'g')))",
        "The 8-hex-digit tag of a keyword; a tag in any usual spelling is normalised.",
        "dicom_tag('PatientAge') = '00101010'",
    ),
    Macro(
        "dicom_json_path",
        "path",
        "'$' || array_to_string(list_transform(string_split(trim(path), '.'), lambda step, i: "
        "'.\"' || dicom_tag(regexp_extract(step, '^[^\\[]+')) || '\"' "
        "|| CASE WHEN i < len(string_split(trim(path), '.')) "
        "THEN '.Value' || coalesce(nullif(regexp_extract(step, '\\[[0-9]+\\]$'), ''), '[0]') "
        "ELSE '' END), '')",
        "The JSON path of an element in ``header_json`` for a keyword/tag path.",
        "dicom_json_path('ReferencedImageSequence.ReferencedSOPInstanceUID')",
    ),
    Macro(
        "dicom_element",
        "header, path",
        "json_extract(header, dicom_json_path(path))",
        'The element as DICOM JSON (``{"vr": ..., "Value": [...]}``), or NULL when absent.',
        "dicom_element(header_json, '(0029,1010)')",
    ),
    Macro(
        "dicom_value",
        "header, path",
        "json_extract_string(header, dicom_json_path(path) || '.Value[0]')",
        "The first value as text (a person name or sequence item comes back as its JSON object), or NULL.",
        "dicom_value(header_json, 'RequestAttributesSequence.RequestedProcedureID')",
    ),
    Macro(
        "dicom_number",
        "header, path",
        "TRY_CAST(json_extract_string(header, dicom_json_path(path) || '.Value[0]') AS DOUBLE)",
        "The first value as a DOUBLE (NULL when absent or not a number).",
        "dicom_number(header_json, 'SharedFunctionalGroupsSequence.PixelMeasuresSequence.SliceThickness')",
    ),
    Macro(
        "dicom_values",
        "header, path",
        "from_json(json_extract(header, dicom_json_path(path) || '.Value'), '[\"VARCHAR\"]')",
        "All values as a VARCHAR list, or NULL when absent.",
        "dicom_values(header_json, 'ImageType')",
    ),
    Macro(
        "dicom_vr",
        "header, path",
        "json_extract_string(header, dicom_json_path(path) || '.vr')",
        "The element's value representation, or NULL when absent.",
        "dicom_vr(header_json, '00291010')",
    ),
    Macro(
        "dicom_has",
        "header, attribute",
        "contains(header, '\"' || dicom_tag(attribute) || '\":{')",
        "True when the element occurs at any depth of the header (a substring test: fast, no parsing).",
        "dicom_has(header_json, 'ContrastBolusAgent')",
    ),
)


def _pydicom_dictionary() -> dict[int, tuple[str, str, str, str, str]]:
    """pydicom's data dictionary (tag: VR, VM, name, retired, keyword), without importing pydicom.

    ``import pydicom`` loads its pixel backends (~0.2 s, most of a ``lake sql`` call, which needs
    only this table); the dictionary itself is a plain data module, ``pydicom/_dicom_dict.py``.
    Falls back to ``pydicom.datadict`` when pydicom is loaded already or its layout changed.
    """
    package = importlib.util.find_spec("pydicom") if "pydicom" not in sys.modules else None
    folders = list(package.submodule_search_locations or []) if package else []
    path = Path(folders[0], "_dicom_dict.py") if folders else None
    spec = importlib.util.spec_from_file_location("lake._pydicom_dict", path) if path and path.is_file() else None
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return dict(module.DicomDictionary)
    from pydicom.datadict import DicomDictionary

    return DicomDictionary


@cache
def dictionary_columns() -> dict[str, list[Any]]:
    """The public DICOM data dictionary (from pydicom) as columns: tag, keyword, VR, name, retired."""
    dictionary = _pydicom_dictionary()
    # the tags of pydicom's keyword_dict: one per keyword (the last), the empty keyword included
    with_keyword = set({entry[4]: tag for tag, entry in dictionary.items()}.values())
    tags = sorted(t for t in dictionary if t in with_keyword)
    entries = [dictionary[t] for t in tags]
    return {
        "tag": [f"{t:08X}" for t in tags],
        "keyword": [e[4] for e in entries],
        "vr": [e[0] for e in entries],
        "name": [e[2] for e in entries],
        "retired": [bool(e[3]) for e in entries],
    }


def dictionary_arrow() -> pa.Table:
    """:func:`dictionary_columns` as an Arrow table."""
    import pyarrow as pa

    return pa.table(dictionary_columns())


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``dicom_dictionary`` table and the ``dicom_*`` macros on ``con``."""
    # five parallel lists unnested in one statement: no pyarrow (a query of the lake does not load it)
    columns = dictionary_columns()
    select = ", ".join(f"unnest(${name}) AS {name}" for name in columns)
    con.execute(f"CREATE OR REPLACE TABLE dicom_dictionary AS SELECT {select}", columns)
    # two parallel lists, not a MAP: building a 5,000-entry MAP costs ~0.2 s per connection
    con.execute("SET VARIABLE dicom_keyword_list = (SELECT list(keyword ORDER BY tag) FROM dicom_dictionary)")
    con.execute("SET VARIABLE dicom_tag_list = (SELECT list(tag ORDER BY tag) FROM dicom_dictionary)")
    for macro in MACROS:
        con.execute(f"CREATE OR REPLACE MACRO {macro.name}({macro.parameters}) AS {macro.body}")
