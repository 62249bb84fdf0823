"""Patients withdrawn from the lake (``lake forget``): kept in the vault so they are never re-ingested.

The list lives beside the key (``KEY.vault/withdrawn.jsonl``), not in the lake: after a forget,
no file of the lake holds anything of that patient, not even the pseudonym.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from lake.config import vault_dir

WITHDRAWN_NAME = "withdrawn.jsonl"


def withdrawn_path(key_path: Path) -> Path:
    return vault_dir(key_path) / WITHDRAWN_NAME


def load_withdrawn(key_path: Path) -> set[str]:
    """Pseudonyms that must not be ingested again (empty when none were withdrawn)."""
    path = withdrawn_path(key_path)
    if not path.is_file():
        return set()
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.add(str(json.loads(line)["pseudonym"]))
    return out


def add_withdrawn(key_path: Path, pseudonyms: Iterable[str]) -> None:
    """Record pseudonyms as withdrawn (idempotent; the file is mode 0600)."""
    path = withdrawn_path(key_path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    known = load_withdrawn(key_path)
    with open(path, "a", encoding="utf-8") as f:
        for pseudonym in sorted(set(pseudonyms) - known):
            f.write(json.dumps({"pseudonym": pseudonym}) + "\n")
    os.chmod(path, 0o600)
