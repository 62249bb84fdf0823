"""numba kernels of the ``lake.gradient`` codec (format in :mod:`lake.pixels.gradient`).

Arrays are ``(rows, cols, samples)`` of unsigned integers; ``bits`` is their width. Compiled on
first call and cached next to this file by numba; they release the GIL, so frames decode in
parallel threads.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def encode_kernel(x: Any, out: Any, bits: int) -> None:
    mask = (1 << bits) - 1
    half = bits - 1
    rows, cols, samples = x.shape
    for c in range(samples):
        for i in range(rows):
            for j in range(cols):
                v = np.int64(x[i, j, c])
                if i > 0:
                    v -= np.int64(x[i - 1, j, c])
                    if j > 0:
                        v += np.int64(x[i - 1, j - 1, c])
                if j > 0:
                    v -= np.int64(x[i, j - 1, c])
                v &= mask
                out[i, j, c] = ((v << 1) ^ (-(v >> half))) & mask


@numba.njit(nogil=True, cache=True)
def decode_kernel(z: Any, out: Any, bits: int) -> None:
    mask = (1 << bits) - 1
    rows, cols, samples = z.shape
    for c in range(samples):
        for i in range(rows):
            running = np.int64(0)
            for j in range(cols):
                e = np.int64(z[i, j, c])
                running = (running + ((e >> 1) ^ (-(e & 1)))) & mask
                if i > 0:
                    out[i, j, c] = (np.int64(out[i - 1, j, c]) + running) & mask
                else:
                    out[i, j, c] = running
