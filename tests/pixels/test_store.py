"""The store's safety nets: a codec that decodes wrongly falls back to the generic codec, and
every shard's checksum is recorded at write time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from zarr.registry import register_codec

from lake.errors import IntegrityError
from lake.pixels import codecs
from lake.pixels.codecs import GENERIC, HTJ2KCodec
from lake.pixels.fixity import FixityStatus, recorded_checksums, shard_checksums, verify_fixity
from lake.pixels.store import PixelStore

# imagecodecs' HTJ2K decoder now and then (about 1 run in 20 of the fallback test, 2026-12-04, not
# reproduced outside zarr's decode threads) reports an OpenJPH message as an exception raised in a
# callback that cannot raise ("Exception ignored in: imagecodecs._htj2k._copy_from_codestream"); the
# frames it decoded are right, and what these tests assert is the store's own read-back comparison
# and fallback, so that report is not a failure here.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@dataclass(frozen=True)
class FlakyCodec(HTJ2KCodec):
    """HTJ2K whose decoder flips one value once, on the ``fail_at``-th decode after arming."""

    codec_name: ClassVar[str] = "lake-test.flaky"
    calls: ClassVar[list[int]] = [0]
    fail_at: ClassVar[list[int | None]] = [3]

    def decode_into(self, data: bytes, out: np.ndarray) -> None:
        super().decode_into(data, out)
        FlakyCodec.calls[0] += 1
        if FlakyCodec.calls[0] == FlakyCodec.fail_at[0]:
            out.flat[0] ^= 1


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> str:
    register_codec(FlakyCodec.codec_name, FlakyCodec)
    factories: dict[str, Any] = {"flaky": lambda _dtype: (FlakyCodec(), [])}
    monkeypatch.setattr(codecs, "CODEC_FACTORIES", factories)
    FlakyCodec.calls[0] = 0
    FlakyCodec.fail_at[0] = 3
    return "flaky"


def _frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, (n, 24, 20)).astype(np.uint16)


def test_mismatch_on_a_new_array_falls_back_and_is_recorded(tmp_path: Path, flaky: str) -> None:
    store = PixelStore(tmp_path / "pixels", shard_frames=4, codec=flaky)
    data = _frames(9, 1)
    store.write("s/a", 0, data, {"Modality": "MR"}, run="run-1")
    attrs = store.attributes("s/a")
    assert attrs["codec"] == GENERIC.value
    assert attrs["codec_fallback"] == [{"from": "flaky", "reason": "round_trip_mismatch", "run": "run-1"}]
    assert attrs["Modality"] == "MR"
    np.testing.assert_array_equal(store.read("s/a", 0, 9), data)
    assert verify_fixity(tmp_path) == []


def test_mismatch_on_a_grown_array_keeps_earlier_frames(tmp_path: Path, flaky: str) -> None:
    FlakyCodec.fail_at[0] = None  # no failure while the first batch is written
    store = PixelStore(tmp_path / "pixels", shard_frames=4, codec=flaky)
    first, second = _frames(6, 2), _frames(7, 3)
    store.write("s/a", 0, first, {}, run="run-1")
    assert store.attributes("s/a")["codec"] == "flaky"
    FlakyCodec.calls[0], FlakyCodec.fail_at[0] = 0, 2
    store.write("s/a", 6, second, {}, run="run-2")
    assert store.attributes("s/a")["codec"] == GENERIC.value
    np.testing.assert_array_equal(store.read("s/a", 0, 13), np.concatenate([first, second]))
    assert not list((tmp_path / "pixels" / "s").glob("*fallback*"))
    assert verify_fixity(tmp_path) == []


def test_checksums_are_recorded_per_shard_and_catch_changes(tmp_path: Path) -> None:
    store = PixelStore(tmp_path / "pixels", shard_frames=4)
    store.write("s/a", 0, _frames(5, 4), {}, run="run-1")
    store.write("s/a", 5, _frames(5, 5), {}, run="run-2")
    recorded = recorded_checksums(tmp_path)
    shards = sorted(p for p in recorded if "/c/" in p)
    assert shards == [f"pixels/s/a/c/{i}/0/0" for i in range(3)]
    assert recorded["pixels/s/a/c/0/0/0"]["run"] == "run-1"  # shard 0 was not touched by run-2
    assert recorded["pixels/s/a/c/2/0/0"]["run"] == "run-2"
    assert {p: r["sha256"] for p, r in recorded.items()} == shard_checksums(tmp_path)
    shard = tmp_path / "pixels/s/a/c/1/0/0"
    shard.write_bytes(shard.read_bytes()[:-1] + b"\0")
    (tmp_path / "pixels/s/a/c/2/0/0").unlink()
    problems = {p.path: p.status for p in verify_fixity(tmp_path)}
    assert problems == {"pixels/s/a/c/1/0/0": FixityStatus.CHANGED, "pixels/s/a/c/2/0/0": FixityStatus.MISSING}
    sidecar = json.loads((tmp_path / "pixels/s/a/fixity.json").read_text())
    assert sidecar["format"] == 1


def test_a_corrupt_shard_index_is_an_integrity_error(tmp_path: Path) -> None:
    store = PixelStore(tmp_path / "pixels", shard_frames=4)
    store.write("s/a", 0, _frames(3, 6), {})
    shard = tmp_path / "pixels/s/a/c/0/0/0"
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF  # inside the index, before its CRC32C
    shard.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="checksum"):
        store.read("s/a", 0, 1)
