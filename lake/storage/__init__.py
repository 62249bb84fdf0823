"""Where the lake's files live: a local folder or an object store, behind one interface.

    >>> from lake.storage import open_storage
    >>> storage = open_storage("s3://bucket/lakes/demo")   # or a local path
    >>> storage.create("runs/R1.json", b"{}")               # put-if-absent

See :mod:`lake.storage.base` for the operations, :mod:`lake.storage.lease` for the write lease that
works on object storage, :mod:`lake.storage.options` for settings from the environment.
"""

from __future__ import annotations

import os

from lake.storage.base import ObjectInfo, Storage, check_path, join
from lake.storage.lease import Lease, hold_lease
from lake.storage.local import LocalStorage
from lake.storage.objects import ObjectStorage
from lake.storage.options import is_object_url

__all__ = [
    "Lease",
    "LocalStorage",
    "ObjectInfo",
    "ObjectStorage",
    "Storage",
    "check_path",
    "hold_lease",
    "is_object_url",
    "join",
    "open_storage",
]


def open_storage(location: str | os.PathLike[str]) -> Storage:
    """The storage of the lake at ``location``: ``s3://bucket/prefix``, ``file:///path`` or a path."""
    text = os.fspath(location)
    if text.startswith("file://"):
        return LocalStorage(text[len("file://") :])
    if is_object_url(text):
        return ObjectStorage(text)
    return LocalStorage(text)
