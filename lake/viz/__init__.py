"""Plots for notebooks: time points of a cohort, follow-up intervals, a study beside its prior, montages.

Every plotting function takes a polars DataFrame with documented columns (or :class:`Volume`
objects), draws on a new :class:`matplotlib.figure.Figure` (or on the ``ax`` given) and returns the
figure; nothing here calls ``plt.show`` or touches pyplot's global figure list, so a loop that draws
hundreds of figures holds none of them. In Jupyter, ``%matplotlib inline`` displays a returned
figure. Matplotlib is imported on first use (``pip install -e ".[notebooks]"``).

:func:`nearest_slice`, :func:`shared_point` and :func:`slice_plane_distances` need only numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lake.lazy import lazy_exports

if TYPE_CHECKING:
    from lake.viz.images import montage, side_by_side
    from lake.viz.position import nearest_slice, shared_point, slice_plane_distances
    from lake.viz.timeline import interval_histogram, swimmer

__all__ = [
    "interval_histogram",
    "montage",
    "nearest_slice",
    "shared_point",
    "side_by_side",
    "slice_plane_distances",
    "swimmer",
]

_EXPORTS = {
    "interval_histogram": "lake.viz.timeline",
    "swimmer": "lake.viz.timeline",
    "montage": "lake.viz.images",
    "side_by_side": "lake.viz.images",
    "nearest_slice": "lake.viz.position",
    "shared_point": "lake.viz.position",
    "slice_plane_distances": "lake.viz.position",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)
