"""Readers see whole batches only: each Delta commit is atomic."""

from __future__ import annotations

import threading
from pathlib import Path

import lake
from lake.ingest import ingest
from lake.testing.synthetic import make_cohort


def test_reader_never_sees_half_a_batch(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_cohort(src, n_patients=4, studies_per_patient=2, n_images=3)  # 24 instances
    root = tmp_path / "lake"
    lake.init(root)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            ingest(root, [src], batch_size=4)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    writer = threading.Thread(target=run)
    writer.start()
    seen = set()
    lk = lake.open(root)
    while writer.is_alive():
        seen.add(lk.sql("SELECT count(*) FROM instances")[0, 0])
    writer.join()
    assert not errors
    seen.add(lk.sql("SELECT count(*) FROM instances")[0, 0])
    assert 24 in seen
    assert all(n % 4 == 0 for n in seen), sorted(seen)
