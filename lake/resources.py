"""The package's data files (``schemas/``), read through :mod:`importlib.resources`.

The one source is the top-level ``schemas/`` folder of the repository. ``lake/schemas`` is a
symbolic link to it (``../schemas``), so the package sees the same files however it is used: from
a source checkout on ``PYTHONPATH``, from an editable install (``pip install -e .``) and from a
wheel, where the build copies the files behind the link into ``lake/schemas/`` (package data, see
``[tool.setuptools.package-data]`` in ``pyproject.toml``; ``tests/test_package.py`` checks the
wheel's file list). Readers get :class:`~importlib.resources.abc.Traversable` objects, never a
path computed from ``__file__``, so a zipped or otherwise relocated install works too.

:func:`source_checkout` tells whether the package runs from a checkout (``pyproject.toml`` and
``schemas/`` beside it): only there may ``lake docs`` write ``docs/tables.md``.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["Traversable", "schema_dir", "schema_file", "source_checkout"]


def _schemas() -> Traversable:
    return files("lake").joinpath("schemas")


def schema_dir(*parts: str) -> Traversable:
    """A folder of ``schemas/``, e.g. ``schema_dir("tables")``."""
    return _schemas().joinpath(*parts)


def schema_file(*parts: str) -> Traversable:
    """A file of ``schemas/``, e.g. ``schema_file("deid", "private-safelist.toml")``."""
    return _schemas().joinpath(*parts)


def source_checkout() -> Path | None:
    """The repository root when ``lake`` is imported from a source checkout, else None (a wheel).

    A checkout is recognised by ``pyproject.toml`` and ``schemas/`` beside the package folder; an
    installed wheel has neither next to ``site-packages/lake``.
    """
    package = files("lake")
    if not isinstance(package, Path):  # a zip or another non-file-system install
        return None
    root = package.resolve().parent
    if (root / "pyproject.toml").is_file() and (root / "schemas").is_dir():
        return root
    return None
