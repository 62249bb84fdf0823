"""Siemens mosaics: one stored frame (ImageType MOSAIC) holding a grid of slices, split into them.

A mosaic of ``n`` slices is a ``g x g`` grid of tiles, ``g = ceil(sqrt(n))``, filled row by row;
tiles past ``n`` are blank. ``n`` is the CSA image header's ``NumberOfImagesInMosaic`` (kept by the
de-identification, :mod:`lake.deid.csa`); without a readable CSA header the tile size comes from
AcquisitionMatrix and ``n`` from the last tile that is not blank.

Geometry, as dcm2niix and nibabel correct it: ImagePositionPatient of a mosaic is the corner of
the whole grid, not of a slice, so the first slice lies at
``IPP + col_dir * row_spacing * (Rows - tile_rows) / 2 + row_dir * col_spacing * (Columns - tile_cols) / 2``
and slice ``k`` at that plus ``k * SpacingBetweenSlices`` (SliceThickness without it) along the CSA
``SliceNormalVector`` (``cross(row_dir, col_dir)`` without it).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from lake.pixels.volume import FrameRef, first_number

if TYPE_CHECKING:
    from lake.core import Lake

CSA_IMAGE_TAG = "00291010"
MOSAIC_SQL = (
    "SELECT SOPInstanceUID, pixel_array, pixel_frame_start, Rows, Columns, AcquisitionMatrix, "
    "SpacingBetweenSlices, SliceThickness FROM instances WHERE SeriesInstanceUID = ? "
    "AND pixel_array IS NOT NULL AND list_contains(ImageType, 'MOSAIC')"
)


@dataclass(frozen=True)
class MosaicInfo:
    images: int  # slices in each mosaic frame (NumberOfImagesInMosaic)
    rows: int  # the mosaic frame's Rows and Columns
    cols: int
    spacing: float  # mm between slices
    normal: tuple[float, float, float] | None  # CSA SliceNormalVector
    from_csa: bool  # False: the count was inferred from AcquisitionMatrix and blank tiles

    @property
    def grid(self) -> int:
        return math.ceil(math.sqrt(self.images))

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.rows // self.grid, self.cols // self.grid


def csa_values(data: bytes) -> dict[str, list[str]]:
    """Element name -> values of a CSA2 header (empty when it cannot be parsed)."""
    from lake.deid import csa

    try:
        return {e.name: e.values() for e in csa.parse(data).elements}
    except csa.CsaError:
        return {}


def _csa_bytes(lk: Lake, sop_instance_uid: str) -> bytes | None:
    """The stored CSA image header of an instance, when the lake keeps its bytes (InlineBinary in
    ``header_json``, or a bulk value the header reader inlines)."""
    header: dict[str, Any] = lk.header(sop_instance_uid, bulk=True)
    inline = (header.get(CSA_IMAGE_TAG) or {}).get("InlineBinary")
    return base64.b64decode(inline) if inline else None


def _inferred_images(frame: np.ndarray, rows: int, matrix: Sequence[int] | None) -> int | None:
    """Slices of a mosaic without CSA: the tile size from AcquisitionMatrix, the count up to the
    last tile holding any non-zero value."""
    sizes = [int(v) for v in matrix or () if v]
    if not sizes or max(sizes) <= 0 or rows % max(sizes):
        return None
    g = rows // max(sizes)
    if g < 2:
        return None
    tr, tc = frame.shape[0] // g, frame.shape[1] // g
    filled = [
        k for k in range(g * g) if np.any(frame[(k // g) * tr : (k // g + 1) * tr, (k % g) * tc : (k % g + 1) * tc])
    ]
    return filled[-1] + 1 if filled else None


def mosaic_info(lk: Lake, series_uid: str, read: Callable[[list[FrameRef]], np.ndarray]) -> MosaicInfo | None:
    """The mosaic layout of a series, or None when it is no mosaic (or its slice count cannot be told)."""
    from lake.catalog.query import fetch_rows

    rows = fetch_rows(lk.connection(), MOSAIC_SQL, [series_uid])
    if not rows:
        return None
    sop, array, start, n_rows, n_cols, matrix, between, thickness = rows[0]
    spacing = first_number(between) or first_number(thickness) or 1.0
    values = csa_values(data) if (data := _csa_bytes(lk, str(sop))) else {}
    count = first_number(values.get("NumberOfImagesInMosaic"))
    normal_values = [float(v) for v in values.get("SliceNormalVector", [])]
    normal = (normal_values[0], normal_values[1], normal_values[2]) if len(normal_values) == 3 else None
    from_csa = bool(count)
    if not count:
        frame = read([FrameRef(str(array), int(start), None, None, None)])[0]
        count = _inferred_images(frame, int(n_rows), matrix)
    if not count or count < 1:
        return None
    return MosaicInfo(int(count), int(n_rows), int(n_cols), float(spacing), normal, from_csa)


def tiles(frames: Sequence[FrameRef], info: MosaicInfo) -> list[FrameRef]:
    """One reference per slice of each mosaic frame, with the slice's own position."""
    tr, tc = info.tile_shape
    out: list[FrameRef] = []
    for ref in frames:
        if ref.position is None or ref.orientation is None:
            out.append(ref)
            continue
        o = np.asarray(ref.orientation, dtype=float)
        row_dir, col_dir = o[:3], o[3:]
        row_spacing, col_spacing = ref.pixel_spacing or (1.0, 1.0)
        first = (
            np.asarray(ref.position, dtype=float)
            + col_dir * row_spacing * (info.rows - tr) / 2
            + row_dir * col_spacing * (info.cols - tc) / 2
        )
        normal = np.asarray(info.normal if info.normal else np.cross(row_dir, col_dir), dtype=float)
        normal = normal / (np.linalg.norm(normal) or 1.0)
        for k in range(info.images):
            p = first + k * info.spacing * normal
            out.append(
                replace(
                    ref,
                    position=(float(p[0]), float(p[1]), float(p[2])),
                    tile=k,
                    tile_shape=(tr, tc),
                    order=(ref.order[0], ref.order[1] * info.images + k),
                )
            )
    return out


def read_tiles(read: Callable[[list[FrameRef]], np.ndarray], refs: Sequence[FrameRef]) -> np.ndarray:
    """Stored values of ``refs`` in their order; mosaic tiles cut from their frames (each read once)."""
    if all(r.tile is None for r in refs):
        return read(list(refs))
    keys = list(dict.fromkeys((r.array, r.index) for r in refs))
    first_of = {(r.array, r.index): r for r in reversed(refs)}
    frames = read([first_of[k] for k in keys])
    where = {k: n for n, k in enumerate(keys)}
    tr, tc = refs[0].tile_shape or frames.shape[1:3]
    g = frames.shape[2] // tc
    out = np.empty((len(refs), tr, tc, *frames.shape[3:]), dtype=frames.dtype)
    for n, r in enumerate(refs):
        frame = frames[where[(r.array, r.index)]]
        k = r.tile or 0
        out[n] = frame[(k // g) * tr : (k // g + 1) * tr, (k % g) * tc : (k % g + 1) * tc]
    return out
