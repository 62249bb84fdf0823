"""The benchmark corpora: pip-shipped test files, plus the shared scanner series when present."""

from __future__ import annotations

from pathlib import Path

from lake.demo import demo_sources

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dicom"


def corpus_files(include_shared: bool = True, shared_only: bool = False) -> list[Path]:
    """Every regular file under the demo sources and (if present) ../shared/data/dicom; with
    ``shared_only``, the shared scanner series alone (none when that folder is absent)."""
    roots = [] if shared_only else list(demo_sources())
    if (include_shared or shared_only) and SHARED.is_dir():
        roots.append(SHARED)
    files = []
    for root in roots:
        files.extend(p for p in sorted(root.rglob("*")) if p.is_file() and p.name not in ("LICENSE", "README.md"))
    return files
