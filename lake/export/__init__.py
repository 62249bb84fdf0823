"""Exports people can open anywhere: teaching sets (:mod:`lake.export.teaching`).

Every export reads one snapshot of the lake and writes only what the lake holds de-identified.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake.lazy import lazy_exports

if TYPE_CHECKING:
    from lake.export.teaching import TeachingExport, export_teaching

__all__ = ["TeachingExport", "export_teaching"]

__getattr__ = lazy_exports(
    __name__, {"TeachingExport": "lake.export.teaching", "export_teaching": "lake.export.teaching"}
)
