"""The ``lake.gradient`` codec: a planar (left + up - up-left) predictor, zigzag, then blosc.

Why it exists: on large CT slices the image codecs decode at 200-350 MB/s per core, which makes
reading a whole uncompressed-original CT volume from the lake slower than pydicom reading the
files (a memory copy). This predictor is lossless JPEG's predictor 4 (and JPEG-LS's in smooth
regions); followed by blosc (bit shuffle + zstd) it lands within 9% of HTJ2K's size and within 17%
of JPEG-LS on the shared CT series, and decodes at 350-500 MB/s per core against HTJ2K's 250-320.
``benchmarks/pixels.py`` measures it against every other codec; ``auto`` picks it where it is the fastest codec within
``AUTO_SLACK`` of the smallest.

Format of one chunk (for readers outside Python): a blosc (v1) frame (zstd, bit shuffle, type size
= item size) of an array of the chunk's shape and the unsigned type of the same width, holding

    r[i, j, c] = zigzag((x[i, j, c] - x[i-1, j, c] - x[i, j-1, c] + x[i-1, j-1, c]) mod 2**bits)

where ``x`` is the frame viewed as unsigned integers (signed values keep their two's complement
bits), samples ``c`` are interleaved, values outside the frame are 0, and
``zigzag(v) = (v << 1) ^ -(v >> (bits - 1))`` on the signed reading of ``v``. Decoding is a
running sum along each row, then along each column, modulo ``2**bits``.

The kernels are compiled by numba on first use (and cached): as separate numpy passes (unzigzag,
two cumulative sums) the decode was five times slower, no faster than HTJ2K.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numcodecs
import numpy as np

# zstd level 1: higher levels gained under 1% on the shared CT and MR series at a third of the speed
BLOSC = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.BITSHUFFLE)

_kernels: tuple[Callable[..., None], Callable[..., None]] | None = None  # (encode, decode)
_kernels_lock = threading.Lock()


def kernels() -> tuple[Callable[..., None], Callable[..., None]]:
    """(encode, decode) kernels, compiled once per process (numba caches them on disk)."""
    global _kernels
    with _kernels_lock:
        if _kernels is None:
            # numba is imported here, not on ``import lake``: it costs a few hundred ms to import
            from lake.pixels import gradient_kernels

            _kernels = gradient_kernels.encode_kernel, gradient_kernels.decode_kernel
        return _kernels


def _unsigned(frame: np.ndarray) -> np.ndarray:
    view = frame.view(frame.dtype.str.replace("i", "u")) if frame.dtype.kind == "i" else frame
    return view.reshape(*frame.shape[:2], -1)  # (rows, cols, samples)


def encode(frame: np.ndarray) -> bytes:
    """One frame ``(rows, cols[, samples])`` of 8- or 16-bit integers as a chunk."""
    frame = np.ascontiguousarray(frame)
    x = _unsigned(frame)
    residuals = np.empty_like(x)
    kernels()[0](x, residuals, 8 * frame.dtype.itemsize)
    return bytes(BLOSC.encode(residuals))


def decode_into(data: bytes, out: np.ndarray) -> None:
    """Decode one chunk into ``out`` (C-contiguous, the frame's shape and dtype)."""
    if not out.flags.c_contiguous:  # a reshape would copy, and the values would never reach ``out``
        raise ValueError("gradient.decode_into needs a C-contiguous output array")
    x = _unsigned(out)
    residuals = np.empty_like(x)
    numcodecs.blosc.decompress(data, dest=residuals)
    kernels()[1](residuals, x, 8 * out.dtype.itemsize)


def decode(data: bytes, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    out = np.empty(shape, dtype=dtype)
    decode_into(data, out)
    return out
