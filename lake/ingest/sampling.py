"""Series sampling made a function of the input: every instance of a series with text is read.

OCR reads a long derived series on a sample of its instances (:func:`lake.deid.pixels.in_series_sample`,
chosen from each instance alone, so which worker got which file does not matter). An instance left
out of the sample is stored unread only if no instance of its series had text; that is known when
the run's input has ended, so the run holds the instances left out (:class:`SeriesSampling`) and
releases them then: unchanged where their series is clean (in this run and in the lake), read again
with every instance read where it is not. Two ingests of the same files, in any order and with any
number of workers, give the same ``pixel_phi_*`` columns.

The held instances wait in memory (their frames) up to :data:`HELD_BYTES`; beyond it only the
source item is kept and the file is read and processed again at the end (the same outcome:
processing is deterministic). A run stopped before its input ended commits none of them; the next
run processes them again. An instance stored unread by an earlier run is read again, from its
stored pixels, when a later run brings text in its series (:mod:`lake.review.reread`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import duckdb

from lake.catalog.tables import snapshot_files
from lake.config import LakePaths
from lake.errors import RejectedInput
from lake.ingest.worker import Processed, Rejection
from lake.sources.base import SourceItem

HELD_BYTES = 1 << 30  # frames of held instances kept in memory; beyond, files are read again
TEXT_REASONS = ("text_found", "identifier_in_text")

#: Processes one file's bytes again: (data, source_ref, every_instance) -> outcome.
Reprocess = Callable[[bytes, str, bool], "Processed | Rejection"]


@dataclass
class _Held:
    item: SourceItem
    ref: str
    size: int
    series: str
    result: Processed | None  # None: over the memory budget, read the file again


class SeriesSampling:
    """The instances of sampled series left unread, held until the run's input has ended."""

    def __init__(self, paths: LakePaths, held_bytes: int | None = None) -> None:
        self.paths = paths
        self.budget = HELD_BYTES if held_bytes is None else held_bytes
        self.bytes = 0
        self.with_text: set[str] = set()  # de-identified SeriesInstanceUIDs
        self.held: list[_Held] = []

    def hold(self, item: SourceItem, ref: str, size: int, result: Processed) -> bool:
        """Note what ``result`` says of its series; True if it is held (left out of the sample)."""
        sample = result.sample
        if sample is None:
            return False
        series = str(result.row.get("SeriesInstanceUID") or "")
        if sample.text:
            self.with_text.add(series)
        if sample.read:
            return False
        frames = sum(f.nbytes for f in (result.frames, result.held) if f is not None)
        keep = self.bytes + frames <= self.budget
        self.bytes += frames if keep else 0
        self.held.append(_Held(item, ref, size, series, result if keep else None))
        return True

    def release(self, reprocess: Reprocess) -> Iterator[tuple[SourceItem, str, int, Processed | Rejection]]:
        """The held instances in input order, each read again where its series has text."""
        held, self.held, self.bytes = self.held, [], 0
        if not held:
            return
        with_text = self.with_text | _series_with_text(self.paths, {h.series for h in held} - self.with_text)
        for h in held:
            every = h.series in with_text
            outcome: Processed | Rejection
            if h.result is not None and not every:
                outcome = h.result
            else:
                try:
                    outcome = reprocess(h.item.read(), h.ref, every)
                except RejectedInput as exc:  # the file went away or changed since it was read
                    outcome = Rejection(exc.stage, exc.reason, exc.detail)
            if isinstance(outcome, Processed):
                outcome.sample = None  # decided: not held again
            yield h.item, h.ref, h.size, outcome


def _series_with_text(paths: LakePaths, series: set[str]) -> set[str]:
    """Which of these (de-identified) series have an instance in the lake with text found by OCR."""
    files = snapshot_files(paths.table("instances"))
    if not files or not series:
        return set()
    con = duckdb.connect(":memory:")
    try:
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        wanted = sorted(series)
        marks = ", ".join("?" for _ in wanted)
        reasons = ", ".join(f"'{r}'" for r in TEXT_REASONS)
        rows = con.execute(
            f"SELECT DISTINCT SeriesInstanceUID FROM read_parquet([{listed}], union_by_name = true) "
            f"WHERE SeriesInstanceUID IN ({marks}) AND pixel_phi_reason IN ({reasons})",
            wanted,
        ).fetchall()
    finally:
        con.close()
    return {str(r[0]) for r in rows}
