"""Inputs of an ingest, behind one protocol (:mod:`lake.sources.base`) chosen by URL scheme.

- a path: files, folders (recursive) and zip archives, yielded one file at a time
  (:mod:`lake.sources.local`); nothing is extracted to disk and nothing the user gave is modified;
- ``dicomweb://HOST:PORT/PATH`` and ``dicomweb+https://...``: a QIDO-RS search and WADO-RS
  retrieve from a PACS that remembers, in the vault, the studies it completed
  (:mod:`lake.sources.dicomweb`);
- ``dimse://AET@HOST:PORT``: a C-FIND search and C-GET or C-MOVE retrieve (:mod:`lake.sources.dimse`),
  the same pull engine (:mod:`lake.sources.pacs`: completeness, cursor, politeness);
- ``lake listen``: a storage SCP that ingests what is pushed to it, in batches (:mod:`lake.sources.listener`).

A :class:`SourceItem` carries a ``label`` (the real path or the UIDs, which can carry PHI: it goes
only to the vault's run log, never into the lake) and reads its bytes on demand.
"""

from __future__ import annotations

from lake.sources.base import Source, SourceContext, SourceItem, SourceLimits, check_source, open_source
from lake.sources.local import iter_sources

__all__ = ["Source", "SourceContext", "SourceItem", "SourceLimits", "check_source", "iter_sources", "open_source"]
