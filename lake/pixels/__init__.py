"""Pixels: decoding, the Zarr v3 store and its codecs, volumes in patient space, previews.

``lake.Lake`` is the usual way in (``pixels``, ``series_array``, ``volume``, ``thumbnail``,
``montage``); these names are for type hints and for tools such as ``lake verify``. They load on
first use: importing a module of this package does not import zarr and the codecs unless it
needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake.lazy import lazy_exports

if TYPE_CHECKING:
    from lake.pixels.codecs import PixelCodec
    from lake.pixels.fixity import shard_checksums, verify_fixity
    from lake.pixels.volume import GeometryIssue, Volume

__all__ = ["GeometryIssue", "PixelCodec", "Volume", "shard_checksums", "verify_fixity"]

_EXPORTS = {
    "PixelCodec": "lake.pixels.codecs",
    "shard_checksums": "lake.pixels.fixity",
    "verify_fixity": "lake.pixels.fixity",
    "GeometryIssue": "lake.pixels.volume",
    "Volume": "lake.pixels.volume",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)
