"""Every text a reader could get out of a lake's files, each with the place it came from.

A place names the file (relative to the lake), the table (``tables/<table>/...``), the Parquet
column, the JSON key path or statistic, and for DICOM JSON (``header_json``) the tag path
(``00400275[0].00321060``) with its keywords. Decoded are: Parquet values (strings, binaries,
numbers, nested lists and structs), footer statistics and key-value metadata, JSON files and JSON
lines (the Delta log with its ``stats`` and ``schemaString``, ``_lake_ranges.json``, fixity
files, ``zarr.json`` attributes, reports), JSON held in strings, base64 runs that decode to text,
``InlineBinary`` at any depth of a DICOM JSON dataset, bytes as UTF-8, UTF-16 (either byte order)
or latin-1, a gzip stream in the first bytes of a binary value inflated (the GE Protocol Data Block),
and file and folder names. Pixel chunks (``.../c/...``) are compressed pixels, not
text, and are skipped (burned-in text is the pixel policy's job).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

#: Suffixes read as UTF-8 text (JSON-looking ones are also parsed).
TEXT_SUFFIXES = (".json", ".jsonl", ".txt", ".csv", ".md", ".html", ".crc", ".sql", ".toml", ".lock")
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
#: A base64 run long enough to hold a word (12 characters decode to 9 bytes).
_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/=])(?=[0-9]*[A-Za-z+/])[A-Za-z0-9+/]{12,}={0,2}(?![A-Za-z0-9+/=])")
#: UTF-8 read as latin-1 somewhere on the way (``MÃœLLER`` for ``MÜLLER``).
_MOJIBAKE = re.compile("[\xc2-\xf4][\x80-\xbf]")
PRINTABLE_SHARE = 0.85
_GZIP = b"\x1f\x8b\x08"
MAX_INFLATED = 1 << 20  # a gzip member inflated at most this far (a small value must not become gigabytes)
#: Names the lake writes itself (UIDs, part files, Delta log entries, array folders, report files).
_LAKE_NAME = re.compile(
    r"2\.25\.\d+|part-\d{5}-[0-9a-f-]{36}-c\d{3}(?:\.[a-z0-9]+)*\.parquet|\d{20}(?:\.checkpoint(?:\.\d+\.\d+)?)?\.(?:json|parquet|crc)"
    r"|_last_checkpoint|_delta_log|\d+(?:x\d+)*-[a-z]+\d*(?:\.[0-9a-f]{24})?(?:~[A-Z]\d{8}T\d{6}-[0-9a-f]{6}(?:\.\d+)?)?|deid-[A-Z]\d{8}T\d{6}-[0-9a-f]{6}\.json|_lake_[a-z]+\.json"
    r"|zarr\.json|fixity\.json|lake\.json|\.lock|c|\d+"
)

#: (place, text) pairs; every text is searched as is.
Texts = Iterator[tuple["Place", str]]


@dataclass(frozen=True)
class Place:
    """Where a text was read. Holds names of the lake's own structure only, never a value."""

    path: str  # the file (or folder), relative to the lake
    where: str  # name | text | binary | json | delta log | parquet value | parquet statistics | parquet metadata
    table: str | None = None
    column: str | None = None
    key: str | None = None  # JSON key path, statistic (min, max) or metadata key
    tag_path: str | None = None  # DICOM JSON tag path: 00400275[0].00321060
    keywords: str | None = None  # the same path in keywords where the dictionary knows them
    encoding: str = "text"  # how the text was decoded: text, base64, InlineBinary, utf-16-le, latin-1, ...


@lru_cache(maxsize=4096)
def _keyword(tag: str) -> str:
    from pydicom.datadict import keyword_for_tag

    try:
        return keyword_for_tag(int(tag, 16)) or tag
    except ValueError:
        return tag


def safe_name(name: str, index: int) -> str:
    """``name`` when it is one the lake or DICOM writes (a keyword, a column, a UID), else ``#index``.

    Keys, column and file names of a lake are structure, but one written by a bug may be a value:
    a place never shows a name it cannot vouch for, only its position.
    """
    from lake.audit.vocabulary import is_vocabulary

    if _LAKE_NAME.fullmatch(name) or _TAG.match(name) or is_vocabulary(name):
        return name
    return f"#{index}"


def _printable_share(text: str) -> float:
    if not text:
        return 0.0
    return sum(1 for ch in text if ch.isprintable() or ch in "\t\r\n") / len(text)


def byte_texts(data: bytes, always: bool = False) -> list[tuple[str, str]]:
    """The texts ``data`` can be read as: (encoding, text), UTF-8, UTF-16 LE/BE, NUL-stripped, latin-1.

    Without ``always`` only readings that are mostly printable are returned (for bytes that may be
    anything, such as decoded base64 runs); with it, UTF-8 (or latin-1 when not UTF-8) and the
    NUL-stripped latin-1 reading are always returned (for payloads a reader would show as text).
    """
    out: list[tuple[str, str]] = []

    def add(encoding: str, text: str) -> None:
        if text and (always or _printable_share(text) >= PRINTABLE_SHARE) and all(text != t for _, t in out):
            out.append((encoding, text))

    try:
        add("utf-8", data.decode("utf-8"))
    except UnicodeDecodeError:
        add("latin-1", data.decode("latin-1"))
    if b"\x00" in data:
        for codec in ("utf-16-le", "utf-16-be"):
            if len(data) >= 2:
                add(codec, data[: len(data) // 2 * 2].decode(codec, "replace").replace("\ufffd", ""))
                add(codec, data[1 : 1 + (len(data) - 1) // 2 * 2].decode(codec, "replace").replace("\ufffd", ""))
        add("latin-1 without NULs", data.replace(b"\x00", b"").decode("latin-1"))
    inflated = _inflated(data)
    if inflated:
        add("gzip > latin-1", inflated.decode("latin-1"))
    return out


def _inflated(data: bytes) -> bytes | None:
    """The bytes of a gzip member starting in the first 8 bytes of ``data`` (after a length prefix), if any."""
    start = data.find(_GZIP, 0, 8 + len(_GZIP))
    if start < 0:
        return None
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[start:], MAX_INFLATED)
    except zlib.error:
        return None


def string_texts(place: Place, text: str) -> Texts:
    """The string itself, then what it holds: base64 runs that decode to text, mojibake undone.

    A string that is JSON is parsed and walked instead (its escapes decoded, each value in its place).
    """
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            pass
        else:
            yield from json_texts(place, obj)
            return
    yield place, text
    if len(stripped) >= 12:
        for run in _BASE64_RUN.findall(text):
            try:
                data = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
            except (binascii.Error, ValueError):
                continue
            for encoding, decoded in byte_texts(data):
                yield replace(place, encoding=_joined(place.encoding, "base64", encoding)), decoded
    if _MOJIBAKE.search(text):
        try:
            undone = text.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            undone = ""
        if undone:
            yield replace(place, encoding=_joined(place.encoding, "utf-8 read as latin-1")), undone


def _joined(*encodings: str) -> str:
    return " > ".join(e for e in encodings if e and e != "text" and e != "utf-8") or "text"


def _key(parent: str | None, child: str) -> str:
    return f"{parent}.{child}" if parent else child


def is_dicom_dataset(obj: dict[str, Any]) -> bool:
    """A DICOM JSON model dataset: tags as keys, each value an object with a ``vr``."""
    return bool(obj) and all(_TAG.match(k) and isinstance(v, dict) and "vr" in v for k, v in obj.items())


def json_texts(place: Place, obj: Any) -> Texts:
    """Every key and scalar of a parsed JSON value, with its key path; DICOM datasets by tag path."""
    if isinstance(obj, dict):
        if is_dicom_dataset(obj):
            yield from dicom_texts(place, obj, [], [])
            return
        for i, (k, v) in enumerate(obj.items()):
            inner = replace(place, key=_key(place.key, safe_name(str(k), i)))
            if k in ("stats", "stats_parsed") and "_delta_log/" in place.path:
                yield from _delta_stats(inner, v)
                continue
            yield inner, str(k)
            yield from json_texts(inner, v)
    elif isinstance(obj, list):
        for item in obj:
            yield from json_texts(place, item)
    elif isinstance(obj, str):
        yield from string_texts(place, obj)
    elif obj is not None and not isinstance(obj, bool):
        yield place, str(obj)


def _delta_stats(place: Place, stats: Any) -> Texts:
    """A Delta ``add`` action's statistics (a JSON string): each column's min and max as its own place."""
    if isinstance(stats, str):
        try:
            stats = json.loads(stats)
        except ValueError:
            yield from string_texts(place, stats)
            return
    if not isinstance(stats, dict):
        yield from json_texts(place, stats)
        return
    for kind, value in stats.items():
        if isinstance(value, dict):
            for column, inner in _flatten(value):
                yield from json_texts(replace(place, where="delta stats", column=column, key=str(kind)), inner)
        else:
            yield from json_texts(replace(place, where="delta stats", key=str(kind)), value)


def _flatten(stats: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for i, (k, v) in enumerate(stats.items()):
        name = f"{prefix}.{safe_name(str(k), i)}" if prefix else safe_name(str(k), i)
        yield name, str(k)  # the column name is text in the file too
        if isinstance(v, dict):
            yield from _flatten(v, name)
        else:
            yield name, v


def dicom_texts(place: Place, ds: dict[str, Any], tags: list[str], keywords: list[str]) -> Texts:
    """Every value of a DICOM JSON dataset at any depth; InlineBinary decoded, PN components read."""
    for tag, element in ds.items():
        tag_path = [*tags, tag]
        kw_path = [*keywords, _keyword(tag)]
        here = replace(place, tag_path=".".join(tag_path), keywords=".".join(kw_path))
        for name, value in element.items():
            if name == "vr":
                continue
            if name == "InlineBinary" and isinstance(value, str):
                try:
                    data = base64.b64decode(value, validate=False)
                except (binascii.Error, ValueError):
                    yield from string_texts(here, value)
                    continue
                for encoding, text in byte_texts(data, always=True):
                    yield replace(here, encoding=_joined("InlineBinary", encoding)), text
            elif name == "Value" and isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict) and element.get("vr") == "SQ":
                        yield from dicom_texts(
                            place, item, [*tags, f"{tag}[{i}]"], [*keywords, f"{_keyword(tag)}[{i}]"]
                        )
                    elif isinstance(item, dict):  # PN: Alphabetic, Ideographic, Phonetic
                        for group in item.values():
                            yield from json_texts(here, group)
                    else:
                        yield from json_texts(here, item)
            else:  # BulkDataURI and anything unexpected
                yield from json_texts(here, value)


# -- files -------------------------------------------------------------------------------------------
def parquet_texts(place: Place, path: Path, may_match: Callable[[str], bool]) -> Texts:
    """Key-value metadata, footer statistics of every column chunk, and every value of every column.

    ``may_match`` is asked first about a whole column joined into one text, so that a column with
    nothing to find (and nothing to decode) is not walked value by value.
    """
    pf = pq.ParquetFile(path)
    meta = pf.metadata
    for i, (k, v) in enumerate((meta.metadata or {}).items()):
        key = k.decode("utf-8", "replace")
        at = replace(place, where="parquet metadata", key=safe_name(key, i))
        yield at, key
        for encoding, text in byte_texts(v, always=True):
            yield from string_texts(replace(at, encoding=encoding), text)
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for c in range(group.num_columns):
            col = group.column(c)
            stats = col.statistics
            if stats is None or not stats.has_min_max:
                continue
            for which, value in (("min", stats.min), ("max", stats.max)):
                column = ".".join(safe_name(p, c) for p in col.path_in_schema.split("."))
                at = replace(place, where="parquet statistics", column=column, key=which)
                yield from _scalar_texts(at, value)
    table = pf.read()
    for c, name in enumerate(table.column_names):
        at = replace(place, where="parquet value", column=safe_name(name, c))
        yield at, name
        yield from column_texts(at, table.column(name), may_match)


def _scalar_texts(place: Place, value: Any) -> Texts:
    if isinstance(value, bytes):
        for encoding, text in byte_texts(value, always=True):
            yield from string_texts(replace(place, encoding=encoding), text)
    elif isinstance(value, str):
        yield from string_texts(place, value)
    elif isinstance(value, dict | list):
        yield from json_texts(place, value)
    elif value is not None and not isinstance(value, bool):
        yield place, str(value)


_NEEDS_DECODING = re.compile(
    r"^\s*[\[{]|(?=[0-9]*[A-Za-z+/])[A-Za-z0-9+/]{12,}|[\xc2-\xf4][\x80-\xbf]|\\u", re.MULTILINE
)


def column_texts(place: Place, column: pa.ChunkedArray, may_match: Callable[[str], bool]) -> Texts:
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values = [v for v in column.to_pylist() if v is not None]
        joined = "\n".join(values)
        if not may_match(joined) and not _NEEDS_DECODING.search(joined):
            return
        for value in values:
            if _quick_skip(value, may_match):
                continue
            yield from string_texts(place, value)
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        for value in column.to_pylist():
            if value is not None:
                yield from _scalar_texts(place, value)
    elif pa.types.is_nested(kind):
        for value in column.to_pylist():
            yield from _scalar_texts(place, value)
    elif not pa.types.is_boolean(kind) and not pa.types.is_null(kind):
        values = [str(v) for v in column.to_pylist() if v is not None]
        if may_match("\n".join(values)):
            for value in values:
                yield place, value


def _quick_skip(value: str, may_match: Callable[[str], bool]) -> bool:
    """True when a JSON string can be searched raw: no escapes, no InlineBinary, no base64 run, no match."""
    return (
        value[:1] == "{"
        and "\\" not in value
        and "InlineBinary" not in value
        and not _BASE64_RUN.search(value)
        and not _MOJIBAKE.search(value)
        and not may_match(value)
    )


def _json_file_texts(place: Place, raw: str) -> Texts:
    try:
        obj = json.loads(raw)
    except ValueError:
        lines = raw.splitlines()
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                yield from string_texts(place, line)
            else:
                yield from json_texts(place, obj)
        return
    yield from json_texts(place, obj)


def safe_path(root: Path, path: Path) -> str:
    """``path`` relative to ``root``, each name the lake does not write replaced by ``#n``, its place
    among its sorted siblings (``reports/#2``: the third entry of ``reports``)."""
    rel = Path(os.path.relpath(path, root))
    out: list[str] = []
    parent = Path(root)
    for part in rel.parts:
        if part == safe_name(part, 0):
            out.append(part)
        else:
            out.append(f"#{sorted(os.listdir(parent)).index(part)}")
        parent = parent / part
    return "/".join(out)


def file_texts(root: Path, path: Path, may_match: Callable[[str], bool]) -> Texts:
    """Every text of one file of the lake (not its name)."""
    rel = safe_path(root, path)
    parts = Path(os.path.relpath(path, root)).as_posix().split("/")
    table = safe_name(parts[1], 0) if parts[0] == "tables" and len(parts) > 2 else None
    delta = "_delta_log" in parts
    place = Place(path=rel, where="delta log" if delta else "text", table=table)
    name = path.name
    if name.endswith(".parquet"):
        yield from parquet_texts(replace(place, where="parquet value"), path, may_match)
        return
    if "c" in parts[:-1] and parts[0] == "pixels":
        return  # a compressed pixel chunk or shard
    data = path.read_bytes()
    if not (name.endswith(TEXT_SUFFIXES) or data.lstrip()[:1] in (b"{", b"[")):
        place = replace(place, where="binary")
    elif not delta:
        place = replace(place, where="json" if data.lstrip()[:1] in (b"{", b"[") else "text")
    for encoding, text in byte_texts(data, always=True):
        at = replace(place, encoding="text" if encoding == "utf-8" else encoding)
        if place.where in ("json", "delta log") and text.lstrip()[:1] in ("{", "["):
            yield from _json_file_texts(at, text)
        else:
            yield from string_texts(at, text)


def lake_texts(root: Path, may_match: Callable[[str], bool] = lambda _text: True) -> Texts:
    """(place, text) for every file and folder name and every decodable content in the lake."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            parts = Path(os.path.relpath(full, root)).as_posix().split("/")
            table = safe_name(parts[1], 0) if parts[0] == "tables" and len(parts) > 1 else None
            yield Place(path=safe_path(root, full), where="name", table=table), name
        for name in sorted(filenames):
            yield from file_texts(root, Path(dirpath) / name, may_match)
