"""Ingest runs: ``from lake.ingest import ingest``."""

from __future__ import annotations

from lake.ingest.run import IngestSummary, ingest

__all__ = ["IngestSummary", "ingest"]
