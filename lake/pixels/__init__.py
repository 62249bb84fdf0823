"""Pixels: decoding, the Zarr v3 store and its codecs, volumes in patient space, previews.

``lake.Lake`` is the usual way in (``pixels``, ``series_array``, ``volume``, ``thumbnail``,
``montage``); these names are for type hints and for tools such as ``lake verify``.
"""

from __future__ import annotations

from lake.pixels.codecs import PixelCodec
from lake.pixels.fixity import shard_checksums, verify_fixity
from lake.pixels.volume import GeometryIssue, Volume

__all__ = ["GeometryIssue", "PixelCodec", "Volume", "shard_checksums", "verify_fixity"]
