"""An ingest run: sources -> units of work -> workers (parse, de-identify, decode, write pixels) -> rows.

Files go to workers in units of work (consecutive files, at most the commit batch,
:data:`lake.ingest.work.TASK_FILES` and ``TASK_BYTES``, a file that OCR will read counting for many:
:func:`work_cost`, so that one unit never holds most of a run's work); each worker writes the unit's pixel arrays,
verified and checksummed, and returns rows (:mod:`lake.ingest.work`). This process commits whole
units: per batch the ``rejects``, ``bulk``, then ``instances`` rows. A crash anywhere leaves the lake
as it was after the last committed batch plus arrays no row points to, which the next run removes;
re-running the same command forms the same units from the files not yet committed and completes it.
:mod:`lake.crashpoints` names the moments between these writes (``ingest.after_pixels``...), where
the fault tests kill the process.

Ctrl-C or SIGTERM (run in the main thread) stops the run cleanly: the workers are killed, the batch
in progress is abandoned (a signal arriving during its commits waits until they are all made), the
``runs`` row is written with outcome ``interrupted`` and :class:`IngestInterrupted` is raised.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import tag_for_keyword

from lake import diagnostics
from lake.catalog.tables import append, to_arrow
from lake.config import DeidSettings, LakePaths, check_lake_folder, read_config, vault_dir
from lake.core import Lake, create_lake
from lake.crashpoints import crash_point
from lake.created import CreatedPaths
from lake.deid import ner
from lake.deid.identity import (
    CROSSWALK_NAME,
    IdentityLedger,
    PatientIdentifier,
    PatientIdentity,
    identifier_for,
    identity_fingerprint,
    load_crosswalk,
)
from lake.deid.ocr_read import forget_readings
from lake.deid.passthrough import check_profile_unchanged, refuse_recipe
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, Profile, ProfileName
from lake.deid.recipe import Recipe, check_recipe, load_recipe
from lake.diagnostics import FileWarning
from lake.errors import ConfigError, KeyFileError, PixelWriteError, RejectedInput
from lake.fixity import record_table_fixity
from lake.headers.schema import load_table_schema
from lake.ingest import updates
from lake.ingest.iocm import RejectionNote
from lake.ingest.pool import TimedPool, WorkerFailure
from lake.ingest.sampling import SeriesSampling
from lake.ingest.state import LakeState
from lake.ingest.work import (
    OCR_FRAME_COST,
    TASK_BYTES,
    TASK_FILES,
    StoreFailure,
    WorkerSpec,
    WorkerState,
    start_worker,
    work,
)
from lake.ingest.worker import Processed, Rejection, content_digest
from lake.interrupts import Interrupted, deferred, signal_of, signals_raise
from lake.keys import LakeKey
from lake.lock import write_lock
from lake.maintenance.orphans import remove_orphan_bulk, remove_orphans, retained_arrays
from lake.review.held import hold_quarantined
from lake.review.reread import reread_series_with_text
from lake.runs import append_run, new_run_id, utc_now
from lake.sources import Source, SourceContext, SourceItem, SourceLimits, check_source, open_source
from lake.sources.filters import PullOptions
from lake.withdrawals import load_withdrawn

logger = logging.getLogger(__name__)

Outcome = Processed | Rejection


@dataclass
class IngestSummary:
    """What a run did. ``seen == ingested + duplicates + rejected + sum(updates.values()) +
    rejection_notes + rejected_by_note`` always holds.

    Corrections (:mod:`lake.ingest.updates`): ``updates`` counts files with a known SOP Instance
    UID and other content by what was done (``replaced``, ``kept_first``, ``flagged``);
    ``rejection_notes`` the IOCM notes applied, ``instances_rejected`` the instances they removed,
    ``rejected_by_note`` the files of instances a note had rejected (not stored).

    ``warnings`` counts, per PHI-free reason code (:mod:`lake.diagnostics`), the files processed
    in this run on which the libraries warned; the messages are in the vault's run log.
    ``identity`` counts identity anomalies among this run's instances, with every earlier run:
    ``several_birth_dates`` and ``several_sexes`` (patient IDs seen with more than one: MRN reuse),
    ``several_issuers`` (issuer-qualified lakes: PatientIDs under several issuer domains), and
    ``studies_without_patient_id`` (each its own patient).
    """

    run_id: str
    seen: int = 0
    ingested: int = 0
    duplicates: int = 0
    rejected: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    pixel_status: Counter[str] = field(default_factory=Counter)
    reject_reasons: Counter[str] = field(default_factory=Counter)
    empty_sources: int = 0  # sources that held no file (their paths go to the console only)
    warnings: Counter[str] = field(default_factory=Counter)
    identity: Counter[str] = field(default_factory=Counter)  # see lake.deid.identity: counts, no values
    updates: Counter[str] = field(default_factory=Counter)
    rejection_notes: int = 0
    instances_rejected: int = 0
    rejected_by_note: int = 0
    studies: Counter[str] = field(default_factory=Counter)  # PACS sources: studies_found, ... (Source.report)

    @property
    def outcome(self) -> str:
        return "ok" if self.rejected == 0 else "partial"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pixel_status"] = dict(self.pixel_status)
        out["reject_reasons"] = dict(self.reject_reasons)
        out["warnings"] = dict(sorted(self.warnings.items()))
        out["identity"] = dict(sorted(self.identity.items()))
        out["updates"] = dict(sorted(self.updates.items()))
        out["studies"] = dict(sorted(self.studies.items()))
        out["outcome"] = self.outcome
        return out


INTERRUPTED = "interrupted"


class IngestInterrupted(Interrupted):
    """SIGINT or SIGTERM stopped the run after it recorded itself; ``summary`` says what was committed
    (``summary.ingested`` instances). Running the same ingest again completes the lake."""

    def __init__(self, signum: int, summary: IngestSummary) -> None:
        super().__init__(signum)
        self.summary = summary


# -- the run ---------------------------------------------------------------------------------------
class _Run:
    def __init__(self, lk: Lake, key: LakeKey, run_id: str, batch_size: int, batch_bytes: int) -> None:
        self.lk = lk
        self.key = key
        self.paths: LakePaths = lk.paths
        self.run_id = run_id
        self.summary = IngestSummary(run_id)
        self.state = LakeState.load(lk.paths)
        self.instances_schema = load_table_schema("instances")
        self.rejects_schema = load_table_schema("rejects")
        self.bulk_schema = load_table_schema("bulk")
        self.batch: list[tuple[Processed, str, int]] = []
        self.batch_sops: set[str] = set()
        self.rejects: list[dict[str, Any]] = []
        self.batch_bytes = 0
        self.max_batch = batch_size
        self.max_batch_bytes = batch_bytes
        self.deid_counts: Counter[tuple[str, str]] = Counter()
        self.withdrawn = load_withdrawn(lk.key_path)
        self.identifier, self.ledger = load_identity(lk, key, self.withdrawn)  # may refuse: before any write
        self.identity_members: set[str] = set()  # committed in this run (keyed digests)
        self.identity_pids: set[str] = set()
        self.studies_without_id: set[str] = set()
        vault = vault_dir(lk.key_path)
        (vault / "runs").mkdir(parents=True, exist_ok=True, mode=0o700)
        self.vault = vault
        self.log = open(vault / "runs" / f"{run_id}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.crosswalk: dict[str, str] = {}
        self.recipe: Recipe | None = None
        self.corrections = updates.Corrections.load(lk.paths)  # issue 16: updates and rejection notes
        self.notes: dict[str, RejectionNote] = {}
        self.candidates: list[updates.Candidate] = []
        self.replacing: set[str] = set()
        self.summary_removed = 0
        self.compactions = 0
        self.handled: list[SourceItem] = []  # outcome decided since the last commit (told when durable)
        self.sampling = SeriesSampling(lk.paths)  # issue 14: instances OCR left unread, until the input ends
        self.written: set[str] = set()  # pixel arrays workers wrote for this run's outcomes
        self.lost_units = 0  # units whose worker died or timed out (their arrays are unknown)
        self._state: WorkerState | None = None

    def spec(self) -> WorkerSpec:
        """What every worker of this run needs but the key (:mod:`lake.ingest.work`)."""
        config = self.lk.config
        return WorkerSpec(
            settings=config.deid, pixels=self.paths.pixels, shard_frames=config.pixels.shard_frames,
            codec=config.pixels.codec, run_id=self.run_id, recipe=self.recipe, identifier=self.identifier,
            bulk=config.bulk, withdrawn=frozenset(self.withdrawn),
        )  # fmt: skip

    def worker_state(self) -> WorkerState:
        """A worker's state in this process (a run without worker processes, and re-processing)."""
        if self._state is None:
            self._state = WorkerState(self.spec(), self.key)
        return self._state

    def close(self) -> None:
        self.log.close()

    def abandon(self) -> None:
        """Drop the batch not yet committed (a rerun processes its files again)."""
        for result, _ref, _size in self.batch:
            self.deid_counts.subtract(result.counts)
        self.deid_counts = +self.deid_counts
        self.batch, self.batch_sops, self.rejects, self.batch_bytes = [], set(), [], 0
        self.candidates, self.replacing = [], set()
        self.crosswalk.clear()
        self.handled = []

    def record(
        self,
        item: SourceItem,
        ref: str,
        outcome: str,
        reason: str = "",
        detail: str = "",
        warnings: tuple[FileWarning, ...] = (),
    ) -> None:
        """The vault's run log: real paths, details and warning messages, never written into the lake.

        Counts the file once per warning code in the summary (codes are PHI-free).
        """
        self.summary.warnings.update({w.code for w in warnings})
        if item.on_durable is not None:
            self.handled.append(item)
        entry: dict[str, Any] = {
            "path": item.label,
            "source_ref": ref,
            "outcome": outcome,
            "reason": reason,
            "detail": detail[:500],
        }
        if warnings:
            entry["warnings"] = [{"code": w.code, "message": w.message, "count": w.count} for w in warnings]
        self.log.write(json.dumps(entry) + "\n")

    def reject(
        self,
        item: SourceItem,
        ref: str,
        stage: str,
        reason: str,
        size: int | None,
        detail: str = "",
        warnings: tuple[FileWarning, ...] = (),
    ) -> None:
        self.summary.rejected += 1
        self.summary.reject_reasons[reason] += 1
        self.record(item, ref, "rejected", f"{stage}:{reason}", detail, warnings)
        if ref in self.state.reject_sources:
            return  # already recorded by an earlier run
        self.state.reject_sources.add(ref)
        self.state.reject_reasons.add(ref, f"{stage}:{reason}")
        self.rejects.append(
            {
                "source_ref": ref,
                "stage": stage,
                "reason": reason,
                "source_bytes": size,
                "ingest_run": self.run_id,
                "rejected_at": utc_now(),
            }
        )

    def accept(self, item: SourceItem, ref: str, size: int, result: Processed) -> None:
        if result.patient_pseudonym in self.withdrawn:
            self.reject(item, ref, "policy", "patient_withdrawn", size, warnings=result.warnings)
            return
        facts = result.identity
        if facts is not None and self.ledger.rekeyed(facts, result.patient_pseudonym, self.withdrawn):
            # the crosswalk changed under patients already in the lake; the vault log says so
            self.reject(item, ref, "policy", "patient_rekeyed", size, REKEYED, result.warnings)
            return
        if updates.handle(self, item, ref, size, result):
            return  # a rejection note, a rejected instance, or a known UID decided at the commit
        self.enqueue(item, ref, size, result)
        if len(self.batch) + len(self.candidates) >= self.max_batch or self.batch_bytes >= self.max_batch_bytes:
            self.flush()

    def enqueue(self, item: SourceItem, ref: str, size: int, result: Processed, outcome: str = "ingested") -> None:
        self.batch_sops.add(result.row["SOPInstanceUID"])
        self.batch.append((result, ref, size))
        self.batch_bytes += sum(f.nbytes for f in (result.frames, result.held) if f is not None)
        self.deid_counts.update(result.counts)
        if any(why == ner.NO_NER_REASON for _attr, why in result.counts):  # issue 12: the summary says it once
            self.summary.warnings[ner.NO_NER_WARNING] += 1
        self.record(item, ref, outcome, warnings=result.warnings)
        if self.lk.config.deid.keep_crosswalk:
            self.crosswalk[result.original_patient_id] = result.patient_pseudonym

    def flush(self) -> None:
        """Commit the batch: pixels, rejects, instances, fixity. SIGINT and SIGTERM wait for the end."""
        if self.batch or self.rejects or self.candidates:
            with deferred():
                self._commit()
        # every outcome decided so far is in the lake now: the sources may advance their cursors
        handled, self.handled = self.handled, []
        for item in handled:
            assert item.on_durable is not None
            item.on_durable()

    def _commit(self) -> None:
        crash_point("ingest.flush")
        intents = updates.resolve(self)  # issue 16: new versions join the batch, their old ones go first
        touched = updates.begin(self, intents)
        # Before the rows: a crash then leaves facts of files a rerun processes again (the same facts).
        for result, _ref, _size in self.batch:
            if result.identity is not None:
                self.ledger.add(result.identity, result.patient_pseudonym)
        self.ledger.save()
        rows = []
        bulk_rows: list[dict[str, Any]] = []
        for result, ref, size in self.batch:
            bulk_rows += _bulk_rows(result, self.run_id)
            row = dict(result.row)  # a worker wrote its pixels (lake.ingest.work) and set pixel_array
            row.update(source_ref=ref, source_bytes=size, ingest_run=self.run_id, ingested_at=utc_now())
            key = row.get("pixel_array")
            if key:
                end = int(row["pixel_frame_start"]) + int(row["frame_count"])
                self.state.next_frame[key] = max(self.state.next_frame.get(key, 0), end)
            rows.append(row)
        crash_point("ingest.after_pixels")
        hold_quarantined(self.lk.key_path, [result for result, _ref, _size in self.batch])  # vault, before the rows
        if self.rejects:
            append(self.paths.table("rejects"), to_arrow(self.rejects, self.rejects_schema))
            crash_point("ingest.after_rejects")
        if bulk_rows:
            # before the rows that reference them, like the pixels: a crash between the two leaves
            # bulk rows of instances not committed, which readers never see and the rerun deletes
            # before writing them again (lake.maintenance.orphans)
            append(self.paths.table("bulk"), to_arrow(bulk_rows, self.bulk_schema))
            crash_point("ingest.after_bulk")
        if rows:
            append(self.paths.table("instances"), to_arrow(rows, self.instances_schema))
            crash_point("ingest.after_instances")
        record_table_fixity(self.paths, self.run_id)
        crash_point("ingest.after_fixity")
        if intents:
            updates.finish(self, touched, {r["source_ref"] for r in intents})
        for result, ref, _size in self.batch:
            self.state.sop_uids.add(result.row["SOPInstanceUID"])
            self.state.instance_sources.add(ref)
            if ref in self.replacing:
                self.summary.updates["replaced"] += 1
            else:
                self.summary.ingested += 1
            self.summary.pixel_status[result.row["pixel_status"]] += 1
            if result.identity is None:
                self.studies_without_id.add(result.patient_pseudonym)
            else:
                self.identity_members.add(result.identity.member)
                self.identity_pids.add(result.identity.patient_id)
        self.batch, self.batch_sops, self.rejects, self.batch_bytes = [], set(), [], 0
        self.replacing.clear()
        self._write_crosswalk()

    def _write_crosswalk(self) -> None:
        if not self.crosswalk:
            return
        path = self.vault / "crosswalk.jsonl"
        with open(path, "a", encoding="utf-8") as f:
            for original, pseudonym in sorted(self.crosswalk.items()):
                f.write(json.dumps({"original_patient_id": original, "pseudonym": pseudonym}) + "\n")
        os.chmod(path, 0o600)
        self.crosswalk.clear()


def _bulk_rows(result: Processed, run_id: str) -> list[dict[str, Any]]:
    """The ``bulk`` table's rows of one instance (its large de-identified binary values)."""
    sop, patient = result.row["SOPInstanceUID"], result.row.get("PatientID")
    return [
        {
            "SOPInstanceUID": sop,
            "PatientID": patient,
            "tag_path": v.tag_path,
            "keyword_path": v.keyword_path,
            "vr": v.vr,
            "length": len(v.value),
            "sha256": v.sha256,
            "value": v.value,
            "ingest_run": run_id,
        }
        for v in result.bulk
    ]


REKEYED = (
    "this patient ID was given another pseudonym by an earlier run: the identity crosswalk "
    f"({CROSSWALK_NAME} in the vault) changed under it; restore its row, or `lake forget` the earlier "
    "pseudonym and ingest the files again"
)


def load_identity(lk: Lake, key: LakeKey, withdrawn: set[str]) -> tuple[PatientIdentifier, IdentityLedger]:
    """The lake's patient identifier (its identity setting and the vault's crosswalk) and ledger.

    Raises :class:`ConfigError` when lake.json's identity setting is not the one the lake's patients
    were keyed with, or when the crosswalk would link patient IDs already in the lake under another
    pseudonym (both would re-key patients).
    """
    vault = vault_dir(lk.key_path)
    settings = lk.config.identity
    ledger = IdentityLedger.for_lake(vault, lk.config.lake_id)
    ledger.check_setting(identity_fingerprint(settings), settings.describe())
    identifier = identifier_for(settings)
    path = vault / CROSSWALK_NAME
    identifier.crosswalk = load_crosswalk(path, identifier)
    ledger.check_crosswalk(identifier.crosswalk, key, withdrawn, path)
    return identifier, ledger


@dataclass
class _Entry:
    """One input item as read: ``todo`` if it needs processing, else accounted for when read (a
    duplicate, a file rejected before, an unreadable item: ``data`` empty if unreadable)."""

    item: SourceItem
    ref: str
    size: int
    data: bytes
    todo: bool
    cost: float = 1.0  # in files of the unit's TASK_FILES (:func:`work_cost`)


def _read_items(items: Iterator[SourceItem], run: _Run, on_file: Callable[[int], None] | None) -> Iterator[_Entry]:
    """Read each item; account for those that need no processing right here, and yield every one
    (units of work are cut from the whole input, :func:`_units`)."""
    for item in items:
        run.summary.seen += 1
        try:
            data = item.read()
        except RejectedInput as exc:
            ref = run.key.digest("source-label", item.label)[:16].hex()
            run.reject(item, ref, exc.stage, exc.reason, item.size, exc.detail)
            if on_file:
                on_file(0)
            yield _Entry(item, ref, 0, b"", todo=False)
            continue
        size = len(data)
        run.summary.bytes_read += size
        ref = run.key.source_ref(content_digest(data))
        if ref in run.state.instance_sources or run.corrections.known(ref):
            run.summary.duplicates += 1  # or a version replaced since, or a rejection note applied
            run.record(item, ref, "duplicate")
        elif ref in run.state.reject_sources:
            # Rejected by an earlier run (or earlier in this one): counted under its own reason.
            why = run.state.reject_reasons.get(ref) or "unknown:unknown"
            run.summary.rejected += 1
            run.summary.reject_reasons[why.partition(":")[2]] += 1
            run.record(item, ref, "rejected", why, "rejected before")
        else:
            updates.note_for(run, ref, data)
            yield _Entry(item, ref, size, data, todo=True, cost=work_cost(data))
            continue
        if on_file:
            on_file(size)
        yield _Entry(item, ref, size, data, todo=False, cost=work_cost(data))


def work_cost(data: bytes) -> float:
    """What a file costs a worker, counted in files not at risk of burned-in text: 1, plus
    :data:`OCR_FRAME_COST` for each frame OCR is expected to read (from a few attributes of the
    header, :func:`lake.deid.pixels.expected_ocr_frames`). A function of the file alone, so the
    same input gives the same units; a file that does not parse costs 1 (its worker rejects it)."""
    from lake.deid.pixels import COST_KEYWORDS, expected_ocr_frames
    from lake.ingest.peek import peek

    tags = [int(tag_for_keyword(k) or 0) for k in COST_KEYWORDS]

    # what the reader warns of, the worker finds again and records with the file: dropped here
    with diagnostics.capture(forward=False):
        try:
            ds = peek(data, tags)  # the element headers up to group 0028 only (lake.ingest.peek)
            if ds is None:
                ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=tags, force=True)
            return 1.0 + OCR_FRAME_COST * expected_ocr_frames(ds)
        except Exception:  # any parse failure: the worker says why, with its rejection
            return 1.0


def _handle(run: _Run, item: SourceItem, ref: str, size: int, outcome: Outcome) -> None:
    if isinstance(outcome, Processed):
        if outcome.row.get("pixel_array"):
            run.written.add(outcome.row["pixel_array"])
        if not run.sampling.hold(item, ref, size, outcome):
            run.accept(item, ref, size, outcome)
    else:
        run.reject(item, ref, outcome.stage, outcome.reason, size, outcome.detail, outcome.warnings)


def ingest(
    lake_path: str | os.PathLike[str],
    sources: Iterable[str | os.PathLike[str]],
    key_file: str | os.PathLike[str] | None = None,
    workers: int = 1,
    batch_size: int = 500,
    batch_bytes: int = 512 * 1024**2,
    limits: SourceLimits | None = None,
    on_file: Callable[[int], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    recipe: str | os.PathLike[str] | Recipe | None = None,
    file_timeout: float | None = None,
    worker_memory_bytes: int | None = None,
    patient_identity: str | PatientIdentity | None = None,
    pull: PullOptions | None = None,
    on_progress: Callable[[Any], None] | None = None,
    scheduler: str | None = None,
) -> IngestSummary:
    """Ingest every file under ``sources`` into the lake (created if missing).

    A source is a folder, a file, a zip, or a PACS URL (``dicomweb://HOST:PORT/PATH``,
    ``dicomweb+https://...``: see :mod:`lake.sources.dicomweb`) pulled with the filters and limits of
    ``pull``; ``on_progress`` is called after each pulled study (``PullProgress``), and
    ``summary.studies`` counts the studies found, pulled, complete, incomplete, skipped, failed.

    ``patient_identity`` (``lake.deid.identity.PatientIdentity``) is the identity of a lake this
    call creates (default ``patient_id``); for an existing lake it must be the lake's own, else
    ``ConfigError`` (a lake's identity is fixed at init: changing it would re-key its patients).

    ``on_file(nbytes)`` is called once per input file for progress display. With ``file_timeout``
    (seconds) or ``worker_memory_bytes`` files are processed in worker processes that are replaced
    when one hangs or dies (see :mod:`lake.ingest.pool`). With ``scheduler`` (``tcp://HOST:PORT``)
    the files are processed on that Dask distributed cluster instead (:mod:`lake.ingest.cluster`;
    ``workers`` and the limits are then the cluster's own; ``ClusterError`` if it does not answer).
    Returns the summary;
    raises only for problems with the lake itself (key, lock), never for a bad input file.

    Before anything is written it raises ``ConfigError`` for a bad argument or lake setting,
    ``SourceError`` for a missing source, ``LakePathError`` for a lake path that is a file and
    ``KeyFileError`` for a key path that is a folder. A lake this call created is removed again
    (with its new key and vault, nothing that existed before) if the run fails before a commit.
    The lake's folder, key and vault are never read as sources: ``on_message`` says so, and
    names each source that held no file (``summary.empty_sources`` counts them).
    """
    _check_arguments(workers, batch_size, batch_bytes, file_timeout, worker_memory_bytes)
    if scheduler is not None:
        from lake.ingest.cluster import check_address

        check_address(scheduler)
    sources = list(sources)
    for source in sources:
        check_source(source)
    paths = LakePaths(lake_path)
    check_lake_folder(paths.root)
    if key_file is not None and Path(key_file).is_dir():
        raise KeyFileError(f"the key file {key_file} is a folder: give the path of the lake's key file")
    # A bad recipe, or one the lake's profile refuses, fails before the lake is touched.
    site_recipe = recipe if isinstance(recipe, Recipe) or recipe is None else load_recipe(recipe)
    if site_recipe is not None:
        settings = read_config(paths).deid if paths.exists() else None
        if settings is not None and settings.profile == ProfileName.PASS_THROUGH:
            refuse_recipe()
        options = settings.options if settings is not None else DEFAULT_RESEARCH_OPTIONS
        check_recipe(site_recipe, Profile(options))
    created: CreatedPaths | None = None
    asked = None if patient_identity is None else PatientIdentity(patient_identity).value
    if paths.exists():
        config = read_config(paths, validate=True)
        check_profile_unchanged(paths, config.deid)  # a lake's profile is fixed at init
        if asked is not None and config.identity.patient_identity != asked:
            raise ConfigError(
                f"the lake {paths.root} keys patients on {config.identity.patient_identity} "
                f"(identity.patient_identity in lake.json), not {asked}: a lake's patient identity is fixed at "
                "`lake init`, as changing it would re-key every patient. Build a new lake with "
                f"`lake init NEW --patient-identity {asked}` and ingest the sources into it"
            )
    else:
        lk, created = create_lake(lake_path, key_file, patient_identity=asked or PatientIdentity.PATIENT_ID.value)
        if on_message:
            on_message(
                f"created lake {lk.root}; key: {lk.key_path} (fingerprint {lk.config.key_fingerprint}); "
                "keep it safe and out of the lake"
            )
    try:
        return _ingest(
            lake_path, sources, key_file, workers, batch_size, batch_bytes, limits, on_file, on_message,
            site_recipe, file_timeout, worker_memory_bytes, pull, on_progress, scheduler,
        )  # fmt: skip
    except BaseException:
        # A lake this command created and that holds no commit yet goes again, with its new key.
        if created is not None and not _has_commits(paths, lk.config.lake_id):
            created.remove()
        raise


def _check_arguments(
    workers: int, batch_size: int, batch_bytes: int, file_timeout: float | None, worker_memory_bytes: int | None
) -> None:
    for name, value, least in (("workers", workers, 1), ("batch_size", batch_size, 1), ("batch_bytes", batch_bytes, 1)):
        if not isinstance(value, int) or value < least:
            raise ConfigError(f"{name} must be a whole number of at least {least}, got {value!r}")
    if file_timeout is not None and not file_timeout > 0:
        raise ConfigError(f"file_timeout must be a positive number of seconds or None (no limit), got {file_timeout!r}")
    if worker_memory_bytes is not None and worker_memory_bytes <= 0:
        raise ConfigError(f"worker_memory_bytes must be positive or None (no limit), got {worker_memory_bytes!r}")


def _has_commits(paths: LakePaths, lake_id: str) -> bool:
    """Whether the lake holds anything a run committed (or is no longer the lake we created)."""
    try:
        if read_config(paths).lake_id != lake_id:
            return True
    except Exception:
        return True
    return any(f.is_file() for folder in (paths.tables, paths.reports) for f in folder.rglob("*"))


def _excluded(lk: Lake) -> dict[str, str]:
    """What an ingest never reads as a source, by real path: the lake, its key and the key's vault."""
    return {
        os.path.realpath(lk.root): "the lake's own folder",
        os.path.realpath(lk.key_path): "the lake's key",
        os.path.realpath(vault_dir(lk.key_path)): "the key's vault",
    }


def _ingest(
    lake_path: str | os.PathLike[str],
    sources: list[str | os.PathLike[str]],
    key_file: str | os.PathLike[str] | None,
    workers: int,
    batch_size: int,
    batch_bytes: int,
    limits: SourceLimits | None,
    on_file: Callable[[int], None] | None,
    on_message: Callable[[str], None] | None,
    site_recipe: Recipe | None,
    file_timeout: float | None,
    worker_memory_bytes: int | None,
    pull: PullOptions | None = None,
    on_progress: Callable[[Any], None] | None = None,
    scheduler: str | None = None,
) -> IngestSummary:
    paths = LakePaths(lake_path)
    lk = Lake(lake_path, key_file)
    key = lk.key()
    load_identity(lk, key, load_withdrawn(lk.key_path))  # refuses a re-keying setting or crosswalk now
    excluded = _excluded(lk)
    empty: list[Path] = []

    def skipped(path: Path) -> None:
        real = os.path.realpath(path)
        what = next((w for p, w in excluded.items() if real == p or real.startswith(p + os.sep)), "")
        if on_message:
            on_message(f"skipped {what} {path}")

    def nothing_in(source: Path) -> None:
        empty.append(source)
        if on_message:
            on_message(f"no files found in {source}")

    context = SourceContext(
        key=key, vault=vault_dir(lk.key_path), lake_id=lk.config.lake_id, limits=limits or SourceLimits(),
        exclude=excluded, on_skip=skipped, on_empty=nothing_in, on_message=on_message, pull=pull,
        on_progress=on_progress,
    )  # fmt: skip
    opened: list[Source] = []

    def every_item() -> Iterator[SourceItem]:
        for spec in sources:
            source = open_source(spec, context)
            opened.append(source)
            yield from source.items()

    items = every_item()
    started = utc_now()
    t0 = time.monotonic()
    with signals_raise():
        try:
            with write_lock(paths.lock, on_wait=on_message):
                # Again under the lock: two first ingests may both have created the lake (the last
                # lake.json wins), or a restore may have replaced it; never write with a stale key.
                lk = Lake(lake_path, key_file)
                key = lk.key()
                context.key, context.vault, context.lake_id = key, vault_dir(lk.key_path), lk.config.lake_id
                run = _Run(lk, key, new_run_id("R"), batch_size, batch_bytes)
                run.recipe = site_recipe
                lk.pixel_store.discard_unfinished()  # what a dead writer left half-built
                remove_orphans(paths, run.state.next_frame)  # arrays a crashed run wrote but never committed
                remove_orphan_bulk(paths, run.state.sop_uids, run.run_id)  # its bulk rows, likewise
                updates.recover(run)  # corrections a crashed run recorded but did not complete
                recorded = False
                try:
                    todo = _units(_read_items(items, run, on_file), min(batch_size, TASK_FILES), TASK_BYTES)
                    if scheduler is not None:
                        _on_cluster(run, todo, scheduler, on_file)
                    elif workers <= 1 and file_timeout is None and worker_memory_bytes is None:
                        _sequential(run, todo, on_file)
                    else:
                        limits_ = (file_timeout, worker_memory_bytes)
                        _parallel(run, todo, workers, lk.config.deid, on_file, limits_)
                    _release_sampled(run)
                    run.flush()
                    _discard_uncommitted(run)
                    updates.compact_removed(run)  # every row is committed: arrays of removed versions
                    with deferred():
                        for source in opened:
                            run.summary.studies.update(source.report())
                        run.summary.seconds = time.monotonic() - t0
                        run.summary.empty_sources = len(empty)
                        _finish(lk, run, started)
                        recorded = True
                    reread_series_with_text(lk, on_message)  # issue 14: earlier runs' unread instances
                except KeyboardInterrupt as exc:
                    if not recorded:  # else the signal came as the complete run was recorded: it is complete
                        _record_interrupted(lk, run, started, t0)
                        raise IngestInterrupted(signal_of(exc), run.summary) from None
                finally:
                    for source in opened:
                        source.close()
                    run.close()
                    forget_readings()  # OCR's readings of this run's pixels, kept in memory (issue 14)
        except KeyboardInterrupt as exc:  # before the run began (waiting for the lock): nothing written
            if isinstance(exc, IngestInterrupted):
                raise
            raise IngestInterrupted(signal_of(exc), IngestSummary("")) from None
    return run.summary


Unit = list[_Entry]


def _units(entries: Iterator[_Entry], files: int, nbytes: int) -> Iterator[Unit]:
    """Units of work: consecutive input items costing at most ``files`` (:func:`work_cost`: a file
    OCR reads counts for many, so that the workers stay balanced) and at most ``nbytes`` bytes (or
    one item), cut from the whole input, so the same input gives the same units whatever was committed
    before. A unit holding a file to process goes to a worker with every readable file of it: the
    files already in the lake too, so its pixel arrays come out the same as in an uninterrupted run
    (a rerun after a crash finds the arrays of a unit committed in part under the same names, and
    points the rest of its rows to them). A unit with nothing to process is not sent."""
    unit: Unit = []
    held, cost = 0, 0.0
    for entry in entries:
        if unit and (cost + entry.cost > files or held + entry.size > nbytes):
            if any(e.todo for e in unit):
                yield [e for e in unit if e.todo or e.data]
            unit, held, cost = [], 0, 0.0
        unit.append(entry)
        held += entry.size
        cost += entry.cost
    if any(e.todo for e in unit):
        yield [e for e in unit if e.todo or e.data]


def _handle_unit(
    run: _Run, unit: Unit, outcomes: list[Outcome] | StoreFailure, on_file: Callable[[int], None] | None
) -> None:
    """The outcomes of the unit's files to process (the others were accounted for when read)."""
    if isinstance(outcomes, StoreFailure):
        raise PixelWriteError(f"{outcomes.message}; the lake keeps its last committed batch, run the ingest again")
    for entry, outcome in zip(unit, outcomes, strict=True):
        if not entry.todo:
            # in the lake already, under an array of its own run that this unit may have cut otherwise:
            # an array of this unit that no committed row uses is discarded at the end of the run
            if isinstance(outcome, Processed) and outcome.row.get("pixel_array"):
                run.written.add(outcome.row["pixel_array"])
            continue
        _handle(run, entry.item, entry.ref, entry.size, outcome)
        if on_file:
            on_file(entry.size)


def _sequential(run: _Run, units: Iterator[Unit], on_file: Callable[[int], None] | None) -> None:
    state = run.worker_state()
    for unit in units:
        _handle_unit(run, unit, state.run([e.data for e in unit]), on_file)


def _release_sampled(run: _Run) -> None:
    """The instances OCR left out of a series' sample, once the input has ended (lake.ingest.sampling):
    read again through a worker's state where their series had text; their pixels written then."""

    def again(data: bytes, ref: str, every_instance: bool) -> Outcome:
        if run.key.source_ref(content_digest(data)) != ref:
            return Rejection("read", "changed_during_run")
        outcomes = run.worker_state().run([data], every=every_instance)
        if isinstance(outcomes, StoreFailure):
            raise PixelWriteError(f"{outcomes.message}; the lake keeps its last committed batch, run the ingest again")
        return outcomes[0]

    def write(released: list[tuple[SourceItem, str, int, Outcome]]) -> None:
        run.worker_state().write_pixels([(o, ref) for _item, ref, _size, o in released if isinstance(o, Processed)])
        for item, ref, size, outcome in released:
            _handle(run, item, ref, size, outcome)

    chunk: list[tuple[SourceItem, str, int, Outcome]] = []
    for released in run.sampling.release(again):
        chunk.append(released)
        if len(chunk) >= min(run.max_batch, TASK_FILES):
            write(chunk)
            chunk = []
    if chunk:
        write(chunk)


def _discard_uncommitted(run: _Run) -> None:
    """Arrays workers wrote for files this run did not store (duplicates in the input, versions kept
    out, withdrawn patients...), and what dead workers left: nothing the lake does not use stays."""
    store = run.lk.pixel_store
    unused = sorted(run.written - set(run.state.next_frame))
    retained = retained_arrays(run.paths) if unused else set()  # an older version's, after optimize merged it
    for key in unused:
        if key not in retained:
            store.discard(key)
    store.discard_unfinished()
    if run.lost_units:  # a dead worker's arrays are not known by name
        remove_orphans(run.paths, run.state.next_frame)


def _record_interrupted(lk: Lake, run: _Run, started: datetime, t0: float) -> None:
    """The ``runs`` row of a run stopped by a signal: what it committed is in the audit too."""
    try:
        with deferred():
            run.abandon()
            s = run.summary
            # read but not finished: in the abandoned batch, or still in a worker
            abandoned = s.seen - s.ingested - s.duplicates - s.rejected
            s.seconds = time.monotonic() - t0
            _finish(lk, run, started, interrupted_with=abandoned)
    except Interrupted:
        pass  # a second signal while recording: the row is written, and the run stops anyway


def _parallel(
    run: _Run,
    units: Iterator[Unit],
    workers: int,
    settings: DeidSettings,
    on_file: Callable[[int], None] | None,
    limits: tuple[float | None, int | None] = (None, None),
) -> None:
    """Units of work in worker processes (their state from :meth:`_Run.spec`, the key apart), handled
    in input order, so runs are deterministic. A unit whose worker died or timed out runs again one
    file at a time, so that only the file that killed its worker (or hung) is rejected."""
    initargs = (run.spec(), run.key.secret)
    ner.warm(settings.options)  # issue 12: the name lists load once here; the forked workers share them
    pool = TimedPool(work, workers, start_worker, initargs, limits[0], limits[1], weigh=_unit_cost)
    tagged = ((unit, tuple(e.data for e in unit)) for unit in units)
    # closed at once when an interrupt ends the loop: the workers are killed, not waited for
    with closing(pool.run(tagged)) as results:
        for unit, result in results:
            if isinstance(result, WorkerFailure):
                run.lost_units += 1
                _handle_unit(run, unit, _one_by_one(unit, result, workers, initargs, limits), on_file)
            else:
                _handle_unit(run, unit, result, on_file)


def _on_cluster(run: _Run, units: Iterator[Unit], scheduler: str, on_file: Callable[[int], None] | None) -> None:
    """Units of work on a Dask cluster (:mod:`lake.ingest.cluster`), handled in input order."""
    from lake.ingest import cluster

    def handle(unit: Unit, result: list[Outcome] | StoreFailure) -> None:
        _handle_unit(run, unit, result, on_file)

    tagged = ((unit, tuple(e.data for e in unit)) for unit in units)
    with closing(cluster.connect(scheduler)) as client:
        cluster.run_on_cluster(client, run.spec(), run.key, tagged, handle, weigh=_unit_cost)


def _unit_cost(unit: Unit) -> float:
    """What a unit costs its worker (:func:`work_cost`): the pool starts the costliest read first."""
    return sum(e.cost for e in unit if e.todo)


def _one_by_one(
    unit: Unit,
    failure: WorkerFailure,
    workers: int,
    initargs: tuple[Any, ...],
    limits: tuple[float | None, int | None],
) -> list[Outcome] | StoreFailure:
    """The files of a unit that timed out or killed its worker, one file per task in fresh workers
    (the pool isolates a file that kills its worker: the culprit alone is rejected)."""
    if len(unit) == 1:
        return [Rejection("process", failure.reason)]
    pool = TimedPool(work, workers, start_worker, initargs, limits[0], limits[1])
    outcomes: list[Outcome] = []
    with closing(pool.run((n, (e.data,)) for n, e in enumerate(unit))) as results:
        for _n, result in results:
            if isinstance(result, WorkerFailure):
                outcomes.append(Rejection("process", result.reason))
            elif isinstance(result, StoreFailure):
                return result
            else:
                outcomes += result
    return outcomes


def _finish(lk: Lake, run: _Run, started: datetime, interrupted_with: int | None = None) -> None:
    """The run's audit row and its de-identification report (counts only, no values).

    ``interrupted_with``: the run was stopped by a signal, leaving that many files it read unfinished
    (``seen == ingested + duplicates + rejected + abandoned``)."""
    from lake.deid.profile import Profile

    run.ledger.save()  # the identity setting, when no batch wrote it
    qualified = lk.config.identity.patient_identity == PatientIdentity.ISSUER_QUALIFIED.value
    identity = run.ledger.anomalies(run.identity_members, run.identity_pids, qualified)
    if run.studies_without_id:
        identity["studies_without_patient_id"] = len(run.studies_without_id)
    run.summary.identity = identity
    counts = run.summary.to_dict()
    if interrupted_with is not None:
        counts.update(outcome=INTERRUPTED, abandoned=interrupted_with)
    profile = Profile(lk.config.deid.options)
    passthrough = lk.config.deid.profile == ProfileName.PASS_THROUGH
    report = {
        "run_id": run.run_id,
        "profile": "pass-through: already de-identified files kept as they are, audited for PHI (lake.deid.passthrough)"
        if passthrough
        else "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile",
        "profile_name": lk.config.deid.profile,
        "profile_edition": profile.edition,
        "options": list(lk.config.deid.options),
        "date_offset_days": list(lk.config.deid.date_offset_days),
        "burned_in_policy": lk.config.deid.burned_in_policy,
        "patient_identity": lk.config.identity.patient_identity,
        "recipe_sha256": run.recipe.sha256 if run.recipe is not None else None,
        "summary": counts,
        "actions": [
            {"attribute": attr, "action": action, "count": n} for (attr, action), n in sorted(run.deid_counts.items())
        ],
    }
    if run.summary.warnings.get(ner.NO_NER_WARNING):
        report["notes"] = [ner.NOT_INSTALLED]
    lk.paths.reports.mkdir(exist_ok=True)
    (lk.paths.reports / f"deid-{run.run_id}.json").write_text(json.dumps(report, indent=1) + "\n")
    params = {
        "profile": lk.config.deid.profile,
        "options": list(lk.config.deid.options),
        "burned_in_policy": lk.config.deid.burned_in_policy,
        "patient_identity": lk.config.identity.patient_identity,
    }
    if run.recipe is not None:
        params["recipe_sha256"] = run.recipe.sha256
    crash_point("ingest.before_runs_row")
    append_run(lk.paths, run.run_id, "ingest", started, params, counts, counts["outcome"])


def vault_log_path(key_path: Path, run_id: str) -> Path:
    return vault_dir(key_path) / "runs" / f"{run_id}.jsonl"
