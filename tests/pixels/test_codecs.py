"""Every pixel codec round-trips bit-exactly through a sharded Zarr v3 array, and is registered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lake  # noqa: F401  (registers the image codecs with zarr)
from lake.errors import ConfigError
from lake.pixels.codecs import (
    AUTO_SLACK,
    GENERIC,
    IMAGE_CODECS,
    PixelCodec,
    choose_codec,
    supports,
    zarr_codecs,
)
from lake.pixels.store import PixelStore

CONCRETE = [c for c in PixelCodec if c != PixelCodec.AUTO]


@st.composite
def frames(draw: st.DrawFn, codec: PixelCodec) -> np.ndarray:
    dtypes = ["uint8", "uint16", "int8", "int16"]
    if codec not in IMAGE_CODECS:
        dtypes += ["uint32", "int32", "float32", "float64"]
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    samples = draw(st.sampled_from([1, 3] if supports(codec, dtype, 3) else [1]))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    if samples == 3:
        shape = (*shape, 3)
    elements = None
    if dtype.kind == "f":
        elements = st.floats(-1e6, 1e6, allow_nan=False, width=dtype.itemsize * 8)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@pytest.mark.parametrize("codec", CONCRETE, ids=[c.value for c in CONCRETE])
def test_round_trip_is_bit_exact(codec: PixelCodec, tmp_path_factory: pytest.TempPathFactory) -> None:
    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=frames(codec))
    def check(data: np.ndarray) -> None:
        root = tmp_path_factory.mktemp("px")
        store = PixelStore(root / "pixels", shard_frames=2, codec=codec.value)
        store.write("s/a", 0, data, {})
        store.write("s/a", data.shape[0], data[::-1].copy(), {})
        reopened = zarr.open_array(store=str(root / "pixels" / "s" / "a"), mode="r")  # plain zarr reader
        assert reopened.dtype == data.dtype
        np.testing.assert_array_equal(np.asarray(reopened[: data.shape[0]]), data)
        np.testing.assert_array_equal(store.read("s/a", data.shape[0], data.shape[0]), data[::-1])
        both = np.concatenate([data, data[::-1]])
        order = [*range(both.shape[0] - 1, -1, -2), 0]
        np.testing.assert_array_equal(store.read_frames("s/a", order), both[order])  # the fast reader
        expected = choose_codec(codec, data.dtype, data.shape[3] if data.ndim == 4 else 1)
        assert store.attributes("s/a")["codec"] == expected

    check()


def test_image_codecs_are_in_the_array_metadata(tmp_path: Path) -> None:
    store = PixelStore(tmp_path / "pixels", codec="htj2k")
    ct = np.arange(-1024, -1024 + 4 * 16 * 16, dtype=np.int16).reshape(4, 16, 16)
    store.write("s/ct", 0, ct, {"Modality": "CT"})
    meta = (tmp_path / "pixels" / "s" / "ct" / "zarr.json").read_text()
    assert '"lake.htj2k"' in meta and '"signed": "offset"' in meta
    assert store.attributes("s/ct") == {"Modality": "CT", "codec": "htj2k"}


def _ct_like(n: int) -> np.ndarray:
    """Smooth anatomy-like structure plus noise: where image codecs beat byte compressors."""
    y, x = np.mgrid[0:96, 0:96]
    base = 800 * np.exp(-((x - 48) ** 2 + (y - 48) ** 2) / 900.0) - 1000
    rng = np.random.default_rng(1)
    return np.stack([base + rng.normal(0, 12, base.shape) for _ in range(n)]).astype(np.int16)


def test_auto_measures_each_new_array_and_records_it(tmp_path: Path) -> None:
    store = PixelStore(tmp_path / "pixels", codec="auto")
    store.write("s/ct", 0, _ct_like(6), {})
    flat = np.zeros((6, 96, 96), np.int16)
    flat[:, 40:50, 40:50] = 7
    store.write("s/flat", 0, flat, {})
    for key in ("s/ct", "s/flat"):
        attrs = store.attributes(key)
        sizes = attrs["codec_measured_bytes"]
        assert {"blosc-zstd-bitshuffle", "gradient", "htj2k", "jpegls"} <= set(sizes)
        fits = [c for c in sizes if sizes[c] <= AUTO_SLACK * min(sizes.values())]
        assert attrs["codec"] == fits[0]
    # noise on smooth anatomy: a predictive or image codec wins over the byte compressor
    assert store.attributes("s/ct")["codec"] in {"gradient", "htj2k", "jpegls"}
    assert store.attributes("s/flat")["codec"] == GENERIC.value  # nearly empty: the fast generic codec


@pytest.mark.parametrize(
    ("dtype", "samples", "expected"),
    [("int16", 1, "htj2k"), ("uint8", 3, "htj2k"), ("float32", 1, GENERIC.value), ("uint32", 1, GENERIC.value)],
)
def test_auto_picks_by_dtype(dtype: str, samples: int, expected: str) -> None:
    assert choose_codec("auto", np.dtype(dtype), samples) == expected


def test_unknown_codec_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="choose one of"):
        zarr_codecs("png-please", np.dtype("uint8"))


def _gradient_reference(frame: np.ndarray) -> bytes:
    """The documented ``lake.gradient`` chunk format, written with numpy (independent of the kernels)."""
    import numcodecs

    bits = 8 * frame.dtype.itemsize
    x = frame.view(frame.dtype.str.replace("i", "u")).reshape(*frame.shape[:2], -1).astype(np.int64)
    padded = np.zeros((x.shape[0] + 1, x.shape[1] + 1, x.shape[2]), np.int64)
    padded[1:, 1:] = x
    v = (padded[1:, 1:] - padded[:-1, 1:] - padded[1:, :-1] + padded[:-1, :-1]) & ((1 << bits) - 1)
    signed = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
    zigzag = ((signed << 1) ^ (signed >> (bits - 1))) & ((1 << bits) - 1)
    blosc = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.BITSHUFFLE)
    return bytes(blosc.encode(np.ascontiguousarray(zigzag.astype(f"u{bits // 8}"))))


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 48, 3)])
def test_gradient_codec_matches_its_documented_format(dtype: str, shape: tuple[int, ...]) -> None:
    from lake.pixels import gradient

    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    frame = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    frame.flat[:2] = [info.min, info.max]  # the wrap-around extremes
    encoded = gradient.encode(frame)
    assert encoded == _gradient_reference(frame)
    np.testing.assert_array_equal(gradient.decode(encoded, frame.shape, frame.dtype), frame)


@pytest.mark.parametrize("codec", ["gradient", "htj2k", "blosc-zstd-bitshuffle"])
def test_large_frames_are_stored_in_tiles(codec: str, tmp_path: Path) -> None:
    """A frame over 2048 rows or columns (a full mammogram) is chunked in 1024 x 1024 tiles."""
    from lake.pixels.store import TILE, chunk_layout

    y, x = np.mgrid[0:2300, 0:1500]
    frames = np.stack([(y * 3 + x * (k + 1)) % 4096 for k in range(2)]).astype(np.uint16)
    store = PixelStore(tmp_path / "pixels", codec=codec)
    store.write("s/mg", 0, frames, {"Modality": "MG"})
    store.write("s/mg", 2, frames[::-1].copy(), {})
    meta = store.metadata("s/mg")
    sharding = meta["codecs"][0]["configuration"]
    assert sharding["chunk_shape"] == [1, TILE, TILE]
    assert chunk_layout((2300, 1500), 2, 64)[1] == (64, 3 * TILE, 2 * TILE)
    both = np.concatenate([frames, frames[::-1]])
    np.testing.assert_array_equal(store.read("s/mg", 0, 4), both)
    np.testing.assert_array_equal(store.read_frames("s/mg", [3, 0]), both[[3, 0]])
    reopened = zarr.open_array(store=str(tmp_path / "pixels" / "s" / "mg"), mode="r")
    np.testing.assert_array_equal(np.asarray(reopened[1, 1000:1100, 1400:1500]), both[1, 1000:1100, 1400:1500])
    from lake.pixels.fixity import verify_fixity

    assert verify_fixity(tmp_path) == []
