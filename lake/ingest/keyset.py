"""Exact membership of a lake's keys in 16 bytes each, for de-duplicating ingests at 10^7+ instances.

An ingest must know every SOPInstanceUID and source reference already committed. Held as Python
strings that cost about 110 bytes each and 10-20 s to load at 10 million instances, on every
ingest, however small. Both keys are 128-bit values written as text: a keyed UID is ``2.25.``
and a decimal integer below 2**128 (:meth:`lake.keys.LakeKey.uid`), a source reference 32 hex
digits. So they are loaded by DuckDB straight into a sorted array of 16-byte big-endian values
(no Python object per key) and looked up by binary search: exact, 16 bytes per key. A value of
another shape (a lake written by other tools) is kept as a string in a small side set.
"""

from __future__ import annotations

import re
import tempfile
import weakref
from typing import Literal

import duckdb
import numpy as np

from lake import memory

Kind = Literal["uid", "hex"]
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,38})")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_PACKED = np.dtype([("hi", ">u8"), ("lo", ">u8")])


def pack(value: str, kind: Kind) -> bytes | None:
    """The 16-byte form of ``value``, or None when it does not have the key's usual shape."""
    if kind == "hex":
        return bytes.fromhex(value) if _HEX32.fullmatch(value) else None
    if not value.startswith("2.25.") or not _DECIMAL.fullmatch(value[5:]):
        return None
    number = int(value[5:])
    return number.to_bytes(16, "big") if number < 1 << 128 else None


def _sql(column: str, kind: Kind) -> tuple[str, str]:
    """(SQL of the packed value as ``v`` UHUGEINT or NULL, SQL of 'has the usual shape')."""
    if kind == "hex":
        shaped = f"regexp_full_match({column}, '[0-9a-f]{{32}}')"
        value = (
            f"((('0x' || substr({column}, 1, 16))::UBIGINT)::UHUGEINT << 64) "
            f"+ ('0x' || substr({column}, 17, 16))::UBIGINT"
        )
    else:
        shaped = f"({column} LIKE '2.25.%' AND regexp_full_match(substr({column}, 6), '0|[1-9][0-9]{{0,38}}'))"
        value = f"TRY_CAST(substr({column}, 6) AS UHUGEINT)"
    return value, shaped


#: The share of the memory budget a key set may hold in memory before it moves to disk.
MEMORY_SHARE = 0.1
#: Keys fetched from DuckDB at a time when the set goes to disk.
FETCH_KEYS = 1_000_000


class KeySet:
    """A set of keys: a sorted array of packed committed keys, plus what was added since."""

    def __init__(self, kind: Kind, packed: np.ndarray | None = None, others: set[str] | None = None) -> None:
        self.kind = kind
        self._sorted = packed if packed is not None else np.empty(0, dtype="S16")
        self._added: set[bytes] = set()
        self._others: set[str] = others or set()

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, source: str, column: str, kind: Kind) -> KeySet:
        """Every non-NULL ``column`` of ``source`` (a FROM clause): one scan, sorted by DuckDB.

        At 10 million keyed UIDs: 3-4 s and 160 MB, against 8 s and about 1.5 GB for a Python set.
        The keys stream from DuckDB in chunks; when they take more than :data:`MEMORY_SHARE` of the
        memory budget (:mod:`lake.memory`) the sorted array goes to an unlinked temporary file,
        memory-mapped (the kernel pages it in and out; a lookup reads about log2(n) pages).
        """
        value, shaped = _sql(column, kind)
        relation = con.sql(
            "SELECT coalesce((_key >> 64)::UBIGINT, 0) AS hi, "
            "coalesce((_key & 18446744073709551615::UHUGEINT)::UBIGINT, 0) AS lo, _key IS NOT NULL AS ok "
            f"FROM (SELECT CASE WHEN {shaped} THEN {value} END AS _key "
            f"FROM {source} WHERE {column} IS NOT NULL) ORDER BY hi, lo"
        )
        total = int(con.execute(f"SELECT count({column}) FROM {source}").fetchall()[0][0])
        budget = memory.current().limit
        on_disk = budget is not None and total * _PACKED.itemsize > budget * MEMORY_SHARE
        sink = tempfile.TemporaryFile(prefix="lake-keys-") if on_disk else None  # noqa: SIM115 (kept open with the set)
        chunks: list[np.ndarray] = []
        count, previous, all_ok = 0, None, True
        for batch in relation.to_arrow_reader(FETCH_KEYS):
            ok = batch.column("ok").to_numpy(zero_copy_only=False).astype(bool)
            all_ok = all_ok and bool(ok.all())
            hi = batch.column("hi").to_numpy(zero_copy_only=False)[ok]
            lo = batch.column("lo").to_numpy(zero_copy_only=False)[ok]
            if not len(hi):
                continue
            first = np.ones(len(hi), dtype=bool)  # sorted: a repeated key follows its first occurrence
            first[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
            first[0] = previous is None or (hi[0], lo[0]) != previous  # the previous chunk's last key
            previous = (hi[-1], lo[-1])
            packed = np.empty(int(first.sum()), dtype=_PACKED)
            packed["hi"], packed["lo"] = hi[first], lo[first]
            count += len(packed)
            if sink is not None:
                sink.write(packed.tobytes())
            else:
                chunks.append(packed)
        if sink is not None and count:
            sink.flush()
            sorted_keys: np.ndarray = np.memmap(sink, dtype="S16", mode="r", shape=(count,))
        else:
            # viewed as bytes first: concatenating the structured arrays would make them little-endian
            sorted_keys = np.concatenate([c.view("S16") for c in chunks]) if chunks else np.empty(0, dtype="S16")
        others: set[str] = set()
        if not all_ok:  # values of another shape: a second scan for just those, kept as text
            others = {
                str(r[0])
                for r in con.execute(
                    f"SELECT DISTINCT {column} FROM {source} "
                    f"WHERE {column} IS NOT NULL AND (CASE WHEN {shaped} THEN {value} END) IS NULL"
                ).fetchall()
            }
        keys = cls(kind, sorted_keys, others)
        if sink is not None:
            weakref.finalize(keys, sink.close)  # the file is unlinked already: closing frees it
        return keys

    def __len__(self) -> int:
        return len(self._sorted) + len(self._added) + len(self._others)

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        key = pack(value, self.kind)
        if key is None:
            return value in self._others
        if key in self._added:
            return True
        # numpy's S16 compares with trailing NUL bytes stripped, on both sides alike: still exact
        i = int(np.searchsorted(self._sorted, key))
        return i < len(self._sorted) and bytes(self._sorted[i]).ljust(16, b"\0") == key

    def add(self, value: str) -> None:
        key = pack(value, self.kind)
        if key is None:
            self._others.add(value)
        else:
            self._added.add(key)
