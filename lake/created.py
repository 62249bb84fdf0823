"""What a command created, so that a command which fails can remove exactly that and nothing else.

A path is recorded *before* it is created, and only when it does not exist yet: whatever existed
before the command is never removed. Folders made only to hold a recorded path (``mkdir -p``
parents) are removed only when they are empty again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


class CreatedPaths:
    """Paths a command is about to create, newest last."""

    def __init__(self) -> None:
        self._paths: list[Path] = []
        self._parents: set[Path] = set()

    def will_create(self, path: str | os.PathLike[str]) -> None:
        """Record ``path`` (a file, or a folder with everything that will be put in it) and its
        missing parents, if it does not exist yet."""
        target = Path(os.path.abspath(path))
        if _exists(target) or target in self._paths:
            return
        self._paths.append(target)
        parent = target.parent
        while not _exists(parent) and parent.parent != parent:
            self._parents.add(parent)
            parent = parent.parent

    def remove(self) -> None:
        """Remove the recorded paths, newest first, then the parents made for them that are empty."""
        for path in reversed(self._paths):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for parent in sorted(self._parents, key=lambda p: len(p.parts), reverse=True):
            try:
                parent.rmdir()
            except OSError:
                continue  # not empty (something else was put there): keep it
        self._paths.clear()
        self._parents.clear()
