"""Package names that load their module on first use (PEP 562 module ``__getattr__``).

A package lists ``{name: module}`` and assigns ``__getattr__ = lazy_exports(__name__, exports)``:
``import lake.pixels`` then stays cheap (no zarr, no codecs) until a name is asked for.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` on first use and caches the value."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
