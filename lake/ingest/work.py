"""What a worker does with a unit of work (a batch of input files), and the state it does it with.

A worker (a process of the local pool, a Dask worker, or the ingest itself when it runs alone)
parses, de-identifies and decodes each file (:func:`lake.ingest.worker.process_file`), then encodes,
verifies and writes the pixel arrays and their checksums itself: one array per (series, geometry)
holding the unit's single-frame instances of that series, one per multi-frame instance
(:meth:`lake.pixels.store.PixelStore.write_new`, named by a digest of the stored frames, their
instances' source references and the array's attributes: the same unit run twice writes the same
array, a masked re-processing or another version of an instance never meets it). What goes
back is small: rows with ``pixel_array`` and ``pixel_frame_start`` set, counts, digests, warnings;
never the frames, but for two kinds the ingest decides on later: quarantined frames (held in the
vault) and instances left out of an OCR sample (:mod:`lake.ingest.sampling`: their frames are
written only once their series is known clean, so unmasked text never reaches the lake's files).
The ingest commits the tables; an array no committed row points to is invisible, and the ingest
removes it (:mod:`lake.maintenance.orphans`).

:class:`WorkerState` is built once per worker process from a picklable :class:`WorkerSpec` and the
lake's key, which travels apart from the spec: as an initializer argument of the local pool, and in
a Dask ``WorkerPlugin`` on a cluster (:mod:`lake.ingest.cluster`), never as a task argument that
the scheduler would log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lake.config import BulkSettings, DeidSettings
from lake.crashpoints import crash_point
from lake.deid import build_deidentifier
from lake.deid.identity import PatientIdentifier
from lake.deid.recipe import Recipe
from lake.diagnostics import silence_process
from lake.errors import LakeError
from lake.ingest.worker import Processed, Rejection, content_digest, process_file
from lake.keys import LakeKey
from lake.pixels.store import PixelStore, frames_array_key, geometry_name

Outcome = Processed | Rejection

#: Files per unit of work at most (a unit is also at most the commit batch, and at most
#: ``TASK_BYTES`` of input): one shard of 64 frames holds a unit's slices of a series.
TASK_FILES = 64
#: What a frame OCR reads counts for in a unit, in files not at risk. Measured, it costs some 50 of
#: them (0.6 s a frame of 512 x 512 against 11 ms a CT or MR file); counted as 16, a unit still
#: holds a few images at risk (one array per series and unit), and the OCR of an archive's
#: ultrasound does not fall to one worker while the others idle.
OCR_FRAME_COST = 16
TASK_BYTES = 128 * 1024**2
#: Decoded frames a worker holds before it writes them (a unit of large radiographs is cut there).
WRITE_BYTES = 512 * 1024**2


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs but the key: picklable, and safe to show (no secret, no PHI)."""

    settings: DeidSettings
    pixels: Path  # the lake's pixels folder
    shard_frames: int
    codec: str
    run_id: str
    recipe: Recipe | None = None
    identifier: PatientIdentifier | None = None  # the lake's identity setting and crosswalk
    bulk: BulkSettings | None = None
    withdrawn: frozenset[str] = frozenset()  # pseudonyms of patients forgotten: their pixels are never written


@dataclass(frozen=True)
class StoreFailure:
    """The worker could not write a unit's pixels (the lake's storage, not a file, failed): the
    ingest stops with :class:`lake.errors.PixelWriteError`. ``message`` names no input value."""

    message: str


class WorkerState:
    """The de-identifier, key, policy and pixel store of one worker process, built once."""

    def __init__(self, spec: WorkerSpec, key: LakeKey) -> None:
        self.spec = spec
        self.key = key
        self.deidentifier = build_deidentifier(key, spec.settings, spec.recipe, spec.identifier)
        self.policy = spec.settings.burned_in_policy
        self.store = PixelStore(spec.pixels, spec.shard_frames, spec.codec)

    def __repr__(self) -> str:  # never the key
        return f"WorkerState(run={self.spec.run_id})"

    def run(self, files: Sequence[bytes], every: bool = False) -> list[Outcome] | StoreFailure:
        """One unit of work: each file's outcome, in order, with the pixels written (``every``: OCR
        reads each file even where its series is sampled, :func:`lake.deid.pixels.decide`)."""
        outcomes: list[Outcome] = []
        pending: list[tuple[Processed, str]] = []
        held = 0
        try:
            for data in files:
                crash_point("ingest.worker_file")
                outcome = process_file(data, self.deidentifier, self.policy, bulk=self.spec.bulk, every_instance=every)
                outcomes.append(outcome)
                if isinstance(outcome, Processed) and not _held_back(outcome):
                    pending.append((outcome, self.key.source_ref(content_digest(data))))
                    held += outcome.frames.nbytes if outcome.frames is not None else 0
                if held > WRITE_BYTES:  # large frames: the unit's arrays are cut here (the same cut each run)
                    self.write_pixels(pending)
                    pending, held = [], 0
            self.write_pixels(pending)
        except (OSError, LakeError) as exc:
            return StoreFailure(f"writing a pixel array failed: {type(exc).__name__}")
        return outcomes

    def _withdrawn(self, result: Processed) -> bool:
        return result.patient_pseudonym in self.spec.withdrawn

    def write_pixels(self, results: Sequence[tuple[Processed, str]]) -> None:
        """Write the frames of ``results`` (``(result, source_ref)``; those with frames not yet
        written): one array per series and geometry of single-frame instances, one per multi-frame
        instance. Each row then points to its frames, and the frames leave the result."""
        groups: dict[tuple[str, str], list[tuple[Processed, str]]] = {}
        for n, (result, ref) in enumerate(results):
            frames = result.frames
            if frames is None or result.row.get("pixel_array") or self._withdrawn(result):
                continue  # nothing to write, written already, or a forgotten patient's (never written)
            series = str(result.row.get("SeriesInstanceUID") or "no-series")
            group = geometry_name(frames) if frames.shape[0] == 1 else f"instance-{n}"
            groups.setdefault((series, group), []).append((result, ref))
        for (series, _group), pairs in groups.items():
            members = [m for m, _ref in pairs]
            frames = np.concatenate([m.frames for m in members if m.frames is not None])
            attributes = members[0].array_attributes
            named_by = [f"{m.row['pixel_sha256']} {ref}" for m, ref in pairs] + [_canonical(attributes)]
            key = frames_array_key(series, frames, named_by)
            self.store.write_new(key, frames, attributes, run=self.spec.run_id)
            crash_point("ingest.after_array")
            start = 0
            for m in members:
                assert m.frames is not None
                m.row["pixel_array"], m.row["pixel_frame_start"] = key, start
                start += int(m.frames.shape[0])
                m.frames = None


def _held_back(result: Processed) -> bool:
    """An instance left out of its series' OCR sample: its frames wait until the series is decided."""
    return result.sample is not None and not result.sample.read


def _canonical(attributes: dict[str, object]) -> str:
    """The array's attributes as text for its name (two arrays of equal frames read differently
    when, say, their photometric interpretation differs)."""
    return json.dumps(attributes, sort_keys=True, default=str)


# -- a local pool's worker process: its state, set once by the pool's initializer -----------------
_state: list[WorkerState] = []


def start_worker(spec: WorkerSpec, secret: bytes) -> None:
    """Initializer of a local pool's worker process: build its state once."""
    silence_process()  # a worker never prints: what it logs or warns is about the files
    _state[:] = [WorkerState(spec, LakeKey(secret))]


def work(files: Sequence[bytes]) -> list[Outcome] | StoreFailure:
    """The task of a local pool's worker process (its state from :func:`start_worker`)."""
    return _state[0].run(files)
