"""Lossless image codecs as Zarr v3 array-to-bytes codecs, and the pixel codec choices of the store.

``imagecodecs``' numcodecs wrappers only work as Zarr v2 compressors, so each image codec used by
the lake is a small :class:`zarr.abc.codec.ArrayBytesCodec` here. They reach zarr's codec registry
through the ``zarr.codecs`` entry points of ``pyproject.toml`` (zarr loads this module when an
array names one), so any Python where ``lake`` is installed opens the arrays with plain
``zarr.open_array``, without even importing lake; importing this module registers them too (a
checkout on ``PYTHONPATH`` without installed metadata).

For readers outside Python (format of one chunk; a chunk is one frame of shape
``(1, rows, cols[, samples])``, or a 1024 x 1024 tile of a frame over 2048 rows or columns with the
edge tiles padded by the fill value, inside the standard ``sharding_indexed`` codec):

- ``{"name": "lake.gradient"}``: planar predictor, zigzag, blosc (see :mod:`lake.pixels.gradient`).
- ``{"name": "lake.htj2k"}``: one HTJ2K (JPEG 2000 part 15) codestream, reversible 5/3 wavelet.
- ``{"name": "lake.jpegls"}``: one lossless JPEG-LS (ISO 14495-1) bitstream.
- ``{"name": "lake.jpegxl"}``: one lossless JPEG XL codestream.
- ``{"name": "lake.jpeg2k"}``: one lossless JPEG 2000 (J2K codestream), reversible 5/3 wavelet.

The image is ``rows x cols`` (grey) or ``rows x cols x 3`` (interleaved RGB, no colour transform
applied to the stored values). With ``"signed": "offset"`` in the configuration, signed integers
were stored as unsigned by flipping the sign bit (``value + 2**(bits-1)``, i.e. XOR ``0x8000`` for
16 bits); undo it after decoding. The array's ``dtype`` in ``zarr.json`` is the decoded type.

Every chunk is decoded again right after encoding and compared with its input: an image codec once
returned wrong data silently here, so a mismatch raises :class:`CodecMismatchError` and the store
rewrites the array with a generic codec (see :mod:`lake.pixels.store`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import imagecodecs
import numcodecs
import numpy as np
from zarr.abc.codec import ArrayBytesCodec, BytesBytesCodec
from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec
from zarr.core.buffer import Buffer, NDBuffer
from zarr.registry import register_codec

from lake.errors import CodecMismatchError, ConfigError
from lake.pixels import gradient

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.common import JSON


class PixelCodec(StrEnum):
    """The lossless codecs a pixel array can be written with (the ``codec`` array attribute)."""

    BLOSC_ZSTD_BITSHUFFLE = "blosc-zstd-bitshuffle"
    BLOSC_ZSTD_SHUFFLE = "blosc-zstd-shuffle"
    BLOSC_LZ4_BITSHUFFLE = "blosc-lz4-bitshuffle"
    ZSTD = "zstd"
    GRADIENT = "gradient"
    HTJ2K = "htj2k"
    JPEGLS = "jpegls"
    JPEGXL = "jpegxl"
    JPEG2K = "jpeg2k"
    AUTO = "auto"  # measured on each new array's first frames (see measure_codecs)


GENERIC = PixelCodec.BLOSC_ZSTD_BITSHUFFLE  # the fallback: lossless for every dtype
IMAGE_CODECS = (PixelCodec.GRADIENT, PixelCodec.HTJ2K, PixelCodec.JPEGLS, PixelCodec.JPEGXL, PixelCodec.JPEG2K)
# ``auto`` measures each new array (measure_codecs); this standard image codec is the choice when
# no measurement is possible (benchmarks/pixels.py: within 10% of the smallest fast codec).
DEFAULT_IMAGE_CODEC = PixelCodec.HTJ2K
_IMAGE_DTYPES = frozenset({"uint8", "uint16", "int8", "int16"})


def _flip_sign(frame: np.ndarray) -> np.ndarray:
    unsigned = frame.view(frame.dtype.str.replace("i", "u"))
    return unsigned ^ np.array(1 << (8 * frame.dtype.itemsize - 1), dtype=unsigned.dtype)


@dataclass(frozen=True)
class ImageCodec(ArrayBytesCodec):
    """Base of the image codecs: one frame per chunk, each verified by a decode after encoding."""

    codec_name: ClassVar[str]
    signed_encoding: ClassVar[str] = "offset"  # how signed integers are stored (the one value allowed)
    signed: str = "offset"
    is_fixed_size = False

    def __post_init__(self) -> None:
        if self.signed != self.signed_encoding:
            raise ConfigError(f"{self.codec_name}: signed must be {self.signed_encoding!r}, not {self.signed!r}")

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> Self:
        config = data.get("configuration") or {}
        assert isinstance(config, dict)
        return cls(signed=str(config.get("signed", cls.signed_encoding)))

    def to_dict(self) -> dict[str, JSON]:
        return {"name": self.codec_name, "configuration": {"signed": self.signed}}

    def encode_frame(self, frame: np.ndarray) -> bytes:
        raise NotImplementedError

    def decode_frame(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def to_codec_values(self, frame: np.ndarray) -> np.ndarray:
        """Values as the codec stores them (signed integers with the sign bit flipped)."""
        return _flip_sign(frame) if frame.dtype.kind == "i" else frame

    def from_codec_values(self, decoded: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
        """The inverse of :meth:`to_codec_values`, as ``dtype``."""
        if dtype.kind == "i":
            return _flip_sign(decoded.astype(dtype.str.replace("i", "u"), copy=False)).view(dtype)
        return decoded.astype(dtype, copy=False)

    def decode_into(self, data: bytes, out: np.ndarray) -> None:
        """Decode one frame into ``out`` (C-contiguous, the frame's shape and stored dtype)."""
        out[...] = self.from_codec_values(self.decode_frame(data), out.dtype).reshape(out.shape)

    def _frame(self, array: np.ndarray) -> np.ndarray:
        """The frame of a ``(1, rows, cols[, samples])`` chunk (a view when contiguous)."""
        return np.ascontiguousarray(array.reshape(array.shape[1:]) if array.shape[0] == 1 else array)

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        decoded = np.empty(chunk_spec.shape, dtype=chunk_spec.dtype.to_native_dtype())
        self.decode_into(chunk_bytes.to_bytes(), self._frame(decoded))
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(decoded)  # type: ignore[arg-type]

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        array = np.asarray(chunk_array.as_ndarray_like())
        frame = self._frame(array)
        data = self.encode_frame(self.to_codec_values(frame))
        back = np.empty_like(frame)
        try:
            self.decode_into(data, back)
        except (ValueError, RuntimeError) as exc:  # the codec libraries' own errors
            raise CodecMismatchError(f"codec {self.codec_name} could not decode its own output: {exc}") from exc
        if not np.array_equal(back, frame):
            raise CodecMismatchError(f"codec {self.codec_name} did not decode a frame to its input")
        return chunk_spec.prototype.buffer.from_bytes(data)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        # The image codecs release the GIL: decoding in threads uses every core.
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        raise NotImplementedError  # variable size; sharding does not need it


@dataclass(frozen=True)
class HTJ2KCodec(ImageCodec):
    codec_name: ClassVar[str] = "lake.htj2k"

    def encode_frame(self, frame: np.ndarray) -> bytes:
        return bytes(imagecodecs.htj2k_encode(frame, reversible=True))

    def decode_frame(self, data: bytes) -> np.ndarray:
        return np.asarray(imagecodecs.htj2k_decode(data))

    def decode_into(self, data: bytes, out: np.ndarray) -> None:
        # Whole-volume reads of large slices are bound by this decoder: decoding straight into the
        # caller's array and undoing the sign offset in place saves two passes over the volume.
        signed = out.dtype.kind == "i"
        target = out.view(out.dtype.str.replace("i", "u")) if signed else out
        try:
            imagecodecs.htj2k_decode(data, out=target)
        except ValueError:  # a codestream of another shape or depth than ``out``
            super().decode_into(data, out)
            return
        if signed:
            np.bitwise_xor(target, 1 << (8 * out.dtype.itemsize - 1), out=target)


@dataclass(frozen=True)
class JPEGLSCodec(ImageCodec):
    codec_name: ClassVar[str] = "lake.jpegls"

    def encode_frame(self, frame: np.ndarray) -> bytes:
        return bytes(imagecodecs.jpegls_encode(frame, level=0))

    def decode_frame(self, data: bytes) -> np.ndarray:
        return np.asarray(imagecodecs.jpegls_decode(data))


@dataclass(frozen=True)
class JPEGXLCodec(ImageCodec):
    codec_name: ClassVar[str] = "lake.jpegxl"

    def encode_frame(self, frame: np.ndarray) -> bytes:
        # effort 1: the only lossless JPEG XL setting that encodes at more than a few MB/s here.
        return bytes(imagecodecs.jpegxl_encode(frame, lossless=True, effort=1, numthreads=1))

    def decode_frame(self, data: bytes) -> np.ndarray:
        return np.asarray(imagecodecs.jpegxl_decode(data, numthreads=1))


@dataclass(frozen=True)
class JPEG2KCodec(ImageCodec):
    codec_name: ClassVar[str] = "lake.jpeg2k"

    def encode_frame(self, frame: np.ndarray) -> bytes:
        return bytes(imagecodecs.jpeg2k_encode(frame, level=0, reversible=True, codecformat="J2K", numthreads=1))

    def decode_frame(self, data: bytes) -> np.ndarray:
        return np.asarray(imagecodecs.jpeg2k_decode(data, numthreads=1))


@dataclass(frozen=True)
class GradientCodec(ImageCodec):
    """Planar predictor + zigzag + blosc (see :mod:`lake.pixels.gradient`); signed values keep
    their two's complement bits, so there is no sign offset."""

    codec_name: ClassVar[str] = "lake.gradient"
    signed_encoding: ClassVar[str] = "twos-complement"
    signed: str = "twos-complement"

    def to_codec_values(self, frame: np.ndarray) -> np.ndarray:
        return frame

    def from_codec_values(self, decoded: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
        return decoded.view(dtype)

    def encode_frame(self, frame: np.ndarray) -> bytes:
        return gradient.encode(frame)

    def decode_into(self, data: bytes, out: np.ndarray) -> None:
        gradient.decode_into(data, out)


IMAGE_CODEC_CLASSES: dict[PixelCodec, type[ImageCodec]] = {
    PixelCodec.GRADIENT: GradientCodec,
    PixelCodec.HTJ2K: HTJ2KCodec,
    PixelCodec.JPEGLS: JPEGLSCodec,
    PixelCodec.JPEGXL: JPEGXLCodec,
    PixelCodec.JPEG2K: JPEG2KCodec,
}

# Tests register a deliberately broken codec here to exercise the fallback.
CODEC_FACTORIES: dict[str, Callable[[np.dtype[Any]], tuple[ArrayBytesCodec | None, list[BytesBytesCodec]]]] = {}


def supports(codec: PixelCodec | str, dtype: np.dtype[Any], samples: int) -> bool:
    """Whether ``codec`` can store frames of ``dtype`` with ``samples`` samples per pixel."""
    if str(codec) not in {c.value for c in IMAGE_CODECS}:
        return True
    if dtype.name not in _IMAGE_DTYPES or samples not in (1, 3):
        return False
    return not (codec == PixelCodec.JPEGXL and samples == 3 and dtype.itemsize > 1)


def choose_codec(requested: PixelCodec | str, dtype: np.dtype[Any], samples: int) -> str:
    """The codec an array is created with: ``auto`` picks the measured default for the dtype.

    An image codec that cannot hold ``dtype`` (e.g. float or 32-bit data) becomes the generic codec.
    """
    if str(requested) in CODEC_FACTORIES:
        return str(requested)
    codec = PixelCodec(requested)
    if codec == PixelCodec.AUTO:
        codec = DEFAULT_IMAGE_CODEC
    return codec.value if supports(codec, dtype, samples) else GENERIC.value


# Fastest-decoding first: on a size tie within AUTO_SLACK, the earlier codec wins.
AUTO_CANDIDATES = (GENERIC, PixelCodec.GRADIENT, PixelCodec.HTJ2K, PixelCodec.JPEGLS, PixelCodec.JPEGXL)
# The storage goal is "within 25% of the smallest lossless codec"; 20% leaves room for the sample
# not being the whole series, and lets the 2x faster-decoding gradient codec win on CT.
AUTO_SLACK = 1.20
AUTO_SAMPLE_FRAMES = 4
AUTO_SAMPLE_SIDE = 512


def encoded_size(codec: PixelCodec, frame: np.ndarray) -> int:
    """Bytes of one frame encoded with ``codec`` as the store would (one core)."""
    if codec in IMAGE_CODEC_CLASSES:
        impl = IMAGE_CODEC_CLASSES[codec]()
        return len(impl.encode_frame(impl.to_codec_values(np.ascontiguousarray(frame))))
    _, compressors = zarr_codecs(codec.value, frame.dtype)
    blosc = compressors[0]
    assert isinstance(blosc, BloscCodec)
    shuffle = numcodecs.Blosc.BITSHUFFLE if blosc.shuffle == BloscShuffle.bitshuffle else numcodecs.Blosc.SHUFFLE
    return len(numcodecs.Blosc(cname="zstd", clevel=5, shuffle=shuffle).encode(np.ascontiguousarray(frame)))


def measure_codecs(frames: np.ndarray) -> tuple[str, dict[str, int]]:
    """``auto``: the codec for a new array, chosen on a sample of its first frames.

    The smallest candidate wins, unless a faster-decoding one is within ``AUTO_SLACK`` of it.
    Returns the codec and the bytes each candidate took on the sample (up to 4 frames, central
    512 x 512 crops), which the store records with the array.
    """
    samples = frames.shape[3] if frames.ndim == 4 else 1
    picks = np.unique(np.linspace(0, frames.shape[0] - 1, min(AUTO_SAMPLE_FRAMES, frames.shape[0])).astype(int))
    # A central crop keeps the cost of measuring a large radiograph near that of a CT slice.
    rows, cols = frames.shape[1], frames.shape[2]
    r0, c0 = max(0, (rows - AUTO_SAMPLE_SIDE) // 2), max(0, (cols - AUTO_SAMPLE_SIDE) // 2)
    sample = frames[picks, r0 : r0 + AUTO_SAMPLE_SIDE, c0 : c0 + AUTO_SAMPLE_SIDE]
    sizes: dict[str, int] = {}
    for codec in AUTO_CANDIDATES:
        if supports(codec, frames.dtype, samples):
            sizes[codec.value] = sum(encoded_size(codec, frame) for frame in sample)
    smallest = min(sizes.values())
    chosen = next(c for c in sizes if sizes[c] <= AUTO_SLACK * smallest)
    return chosen, sizes


def zarr_codecs(codec: str, dtype: np.dtype[Any]) -> tuple[ArrayBytesCodec | None, list[BytesBytesCodec]]:
    """(serializer, compressors) for ``zarr.create_array``; a None serializer means zarr's default."""
    if codec in CODEC_FACTORIES:
        return CODEC_FACTORIES[codec](dtype)
    try:
        name = PixelCodec(codec)
    except ValueError:
        choices = ", ".join(c.value for c in PixelCodec)
        raise ConfigError(f"unknown pixel codec {codec!r}; choose one of {choices}") from None
    if name in IMAGE_CODEC_CLASSES:
        return IMAGE_CODEC_CLASSES[name](), []
    if name == PixelCodec.ZSTD:
        return None, [ZstdCodec(level=3)]
    if name == PixelCodec.AUTO:
        raise ConfigError("resolve 'auto' with choose_codec() before creating an array")
    cname: Literal["lz4", "zstd"] = "lz4" if "lz4" in name.value else "zstd"
    shuffle = BloscShuffle.bitshuffle if name.value.endswith("bitshuffle") else BloscShuffle.shuffle
    return None, [BloscCodec(cname=cname, clevel=5, shuffle=shuffle, typesize=dtype.itemsize)]


def register() -> None:
    """Register the image codecs with zarr (done when this module is imported; safe to repeat)."""
    for cls in IMAGE_CODEC_CLASSES.values():
        register_codec(cls.codec_name, cls)


register()
