"""What a lake does with pixels that may carry burned-in identifiers (``lake init --burned-in-policy``).

A module of its own so that the command line and :func:`lake.init` can name the policies without
importing the detection code (pydicom, numpy, the ``deid`` rules) of :mod:`lake.deid.pixels`.
"""

from __future__ import annotations

from enum import StrEnum


class PixelPolicy(StrEnum):
    """See :mod:`lake.deid.pixels` for what each policy stores."""

    MASK = "mask"
    QUARANTINE = "quarantine"
    KEEP_FLAGGED = "keep-flagged"
    MASK_OR_QUARANTINE = "mask-or-quarantine"
