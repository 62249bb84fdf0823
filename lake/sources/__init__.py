"""Inputs of an ingest: files, folders (recursive) and zip archives, yielded one file at a time.

A :class:`SourceItem` carries a ``label`` (the real path, which can carry PHI: it goes only to
the vault's run log, never into the lake) and reads its bytes on demand. Nothing is extracted to
disk and nothing the user gave is modified.
"""

from __future__ import annotations

from lake.sources.local import SourceItem, SourceLimits, iter_sources

__all__ = ["SourceItem", "SourceLimits", "iter_sources"]
