"""lake: a de-identified research imaging data lake.

import lake
lk = lake.open("/data/my-lake")
lk.sql("SELECT Modality, count(*) FROM instances GROUP BY ALL")
lk.pixels(sop_instance_uid)
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

from lake.core import Lake, init, open
from lake.errors import LakeError

logging.getLogger("lake").addHandler(logging.NullHandler())

__all__ = ["Lake", "LakeError", "__version__", "init", "open"]
