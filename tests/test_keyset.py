"""The ingest's key sets: exact membership at 16 bytes per key, whatever the values look like."""

from __future__ import annotations

import secrets

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from lake.ingest.keyset import KeySet, pack
from lake.keys import LakeKey


def _uids(n: int) -> list[str]:
    key = LakeKey(secrets.token_bytes(32))
    return [key.uid(f"1.2.3.{i}") for i in range(n)]


def test_keyed_uids_and_source_refs_pack_to_16_bytes() -> None:
    key = LakeKey(secrets.token_bytes(32))
    assert all(pack(u, "uid") is not None for u in _uids(200))
    assert pack(key.source_ref(b"x" * 32), "hex") is not None
    assert pack("2.25." + str(2**128), "uid") is None  # too large for 16 bytes: kept as text
    assert pack("2.25.0123", "uid") is None  # leading zero: not the canonical spelling
    assert pack("1.2.840.10008.1", "uid") is None
    assert pack("ABCDEF" * 5 + "00", "hex") is None  # upper case is another string


def _load(values: list[str | None], kind: str) -> KeySet:
    con = duckdb.connect()
    con.register("t", pa.table({"v": pa.array(values, pa.string())}))
    return KeySet.load(con, "t", "v", kind)  # type: ignore[arg-type]


def test_loaded_sets_answer_exactly() -> None:
    uids = _uids(500)
    odd = ["1.2.840.10008.5.1.4.1.1.2", "2.25.0", "2.25." + str(2**128 + 5), "2.25.007"]
    loaded = _load([*uids[:400], *odd, None, uids[0]], "uid")
    assert len(loaded) == 400 + len(odd)
    assert all(u in loaded for u in uids[:400]) and all(o in loaded for o in odd)
    assert not any(u in loaded for u in uids[400:])
    assert "2.25.7" not in loaded and "2.25.07" not in loaded
    loaded.add(uids[450])
    loaded.add("9.9.9")
    assert uids[450] in loaded and "9.9.9" in loaded and uids[451] not in loaded


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 2**128 - 1), max_size=40, unique=True),
    st.lists(st.integers(0, 2**128 - 1), max_size=10),
)
def test_membership_matches_a_python_set(present: list[int], probes: list[int]) -> None:
    """Values with trailing zero bytes, tiny values, the largest value: numpy's S16 must not blur them."""
    edge = [0, 1, 256, 2**64, 2**120, 2**128 - 1, 2**127]
    values = [f"2.25.{n}" for n in present]
    refs = [n.to_bytes(16, "big").hex() for n in present]
    uid_set, ref_set = _load(values, "uid"), _load(refs, "hex")
    for n in [*probes, *edge, *present]:
        assert (f"2.25.{n}" in uid_set) == (n in present)
        assert (n.to_bytes(16, "big").hex() in ref_set) == (n in present)
