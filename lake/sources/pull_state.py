"""What a PACS source pulled before, kept in the vault beside the key: keyed references only.

One JSON line per study whose instances were all committed to the lake: the study's keyed
reference, the keyed fingerprint of what the PACS said about it (so a corrected or grown study is
pulled again), and its counts. Appending a line is the cursor's only write: a run killed while
writing leaves at most a torn last line, which is ignored (that study is pulled again).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from lake.keys import LakeKey


class PullState:
    """The completed studies of one source (its URL, keyed) in ``vault/pulls/``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.complete: dict[str, str] = {}  # study ref -> fingerprint
        self._lock = threading.Lock()
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.complete[entry["study"]] = entry["fingerprint"]
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line of a killed run: that study is pulled again

    @classmethod
    def for_source(cls, vault: Path, key: LakeKey, source_id: str) -> PullState:
        name = key.digest("pull-source", source_id)[:16].hex()
        return cls(vault / "pulls" / f"{name}.jsonl")

    def is_current(self, study: str, fingerprint: str) -> bool:
        return self.complete.get(study) == fingerprint

    def record(self, study: str, fingerprint: str, expected: int, received: int) -> None:
        entry = {"study": study, "fingerprint": fingerprint, "expected": expected, "received": received}
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.complete[study] = fingerprint
