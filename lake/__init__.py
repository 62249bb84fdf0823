"""lake: a de-identified research imaging data lake.

import lake
lk = lake.open("/data/my-lake")
lk.sql("SELECT Modality, count(*) FROM instances GROUP BY ALL")
lk.pixels(sop_instance_uid)

``import lake`` is cheap (no DuckDB, polars, zarr, dask or pydicom): :class:`Lake`, :func:`init`
and :func:`open` load :mod:`lake.core` on first use, and each part of a lake imports its heavy
libraries when it is used (``tests/test_startup.py``, ``benchmarks/startup.py``). The image codecs
reach zarr through its ``zarr.codecs`` entry points (``pyproject.toml``), so ``zarr.open_array``
of a lake array works in any process where lake is installed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

__version__ = "0.1.0"

from lake.errors import LakeError
from lake.lazy import lazy_exports

if TYPE_CHECKING:
    from lake.cohorts.manifest import load_cohort
    from lake.core import Lake, init, open

logging.getLogger("lake").addHandler(logging.NullHandler())

__all__ = ["Lake", "LakeError", "__version__", "init", "load_cohort", "open"]

_FROM_CORE = {"Lake": "lake.core", "init": "lake.core", "load_cohort": "lake.cohorts.manifest", "open": "lake.core"}

__getattr__ = lazy_exports(__name__, _FROM_CORE)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_CORE))
