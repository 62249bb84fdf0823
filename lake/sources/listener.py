"""``lake listen``: a storage SCP (C-STORE, C-ECHO) that ingests what a PACS or a modality pushes.

Through pynetdicom; several associations at once (a thread each). An accepted instance is written
(and fsynced) into a private spool beside the key (``KEY.spool/``: outside the lake and its vault,
which an ingest never reads) before its success status is sent, so nothing acknowledged is lost:
the instances are ingested in batches through the ordinary folder ingest (:func:`lake.ingest.ingest`)
when ``batch_size`` have arrived or after ``quiet_seconds`` without a new one, and removed once their
batch is committed. :meth:`Listener.stop` (the CLI calls it on SIGTERM or SIGINT) closes the port,
lets the open associations end, ingests what is left and returns the totals; a listener killed
outright leaves its spool, which the next one ingests first.

Refused with a status, before anything is written: an instance whose header cannot be read or whose
SOP Instance UID is not the one the request announced (0xC000, cannot understand), one larger than
the lake's limit or arriving while the listener stops (0xA700, out of resources). A SOP class or
transfer syntax it does not support is refused at association negotiation.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lake.errors import ConfigError, SourceError
from lake.sources.base import SourceLimits
from lake.sources.dimse import TRANSFER_SYNTAXES, quiet_pynetdicom
from lake.sources.filters import AE_TITLE

CANNOT_UNDERSTAND, OUT_OF_RESOURCES = 0xC000, 0xA700


@dataclass
class ListenSummary:
    """What a listener did: instances received and refused (by reason), associations, batches, and
    the ingest's counts over every batch (seen = ingested + duplicates + rejected + updates ...)."""

    received: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    associations: int = 0
    batches: int = 0
    seen: int = 0
    ingested: int = 0
    duplicates: int = 0
    rejected: int = 0
    updates: int = 0
    seconds: float = 0.0
    run_ids: list[str] = field(default_factory=list)


class Listener:
    """A storage SCP on ``bind:port`` under ``ae_title`` feeding the lake at ``lake`` (see the module).

    ``on_batch(summary)`` is called after each committed batch with the :class:`IngestSummary`;
    ``ingest_options`` go to :func:`lake.ingest.ingest` (workers, recipe...).
    """

    def __init__(
        self,
        lake: str | os.PathLike[str],
        port: int,
        *,
        ae_title: str = "LAKE",
        bind: str = "0.0.0.0",
        key_file: str | os.PathLike[str] | None = None,
        batch_size: int = 500,
        quiet_seconds: float = 10.0,
        limits: SourceLimits | None = None,
        on_batch: Callable[[Any], None] | None = None,
        ingest_options: dict[str, Any] | None = None,
    ) -> None:
        import lake as lake_api

        if not AE_TITLE.match(ae_title):
            raise ConfigError(f"--ae-title {ae_title!r}: expected an AE title of 1 to 16 characters, no backslash")
        if batch_size < 1 or not quiet_seconds > 0:
            raise ConfigError("batch size must be at least 1 and quiet seconds more than 0")
        opened = lake_api.open(lake, key_file=key_file)  # the lake must exist: a listener never creates one
        self.lake, self.key_file = Path(lake), opened.key_path
        self.port, self.ae_title, self.bind = port, ae_title.strip(), bind
        self.batch_size, self.quiet_seconds = batch_size, quiet_seconds
        self.limits = limits or SourceLimits()
        self.on_batch = on_batch
        self.ingest_options = ingest_options or {}
        self.spool = opened.key_path.with_name(opened.key_path.name + ".spool")
        self.incoming, self.batch_dir = self.spool / "incoming", self.spool / "batch"
        self.summary = ListenSummary()
        self._pending: list[Path] = []
        self._last = time.monotonic()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._server: Any = None

    # -- the SCP --------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the port; the spool a killed listener left is taken up first."""
        from pynetdicom import AE, evt
        from pynetdicom.presentation import AllStoragePresentationContexts
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        for folder in (self.incoming, self.batch_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.spool.chmod(0o700)
        for partial in self.incoming.glob(".*.part"):  # being written when a listener was killed: never acknowledged
            partial.unlink()
        left = [*self.batch_dir.glob("*.dcm"), *self.spool.glob("ingest-*/*.dcm"), *self.incoming.glob("*.dcm")]
        with self._cond:
            self._pending.extend(left)
        quiet_pynetdicom()
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = True
        ae.maximum_associations = 32
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(str(cx.abstract_syntax), list(TRANSFER_SYNTAXES))
        handlers: list[Any] = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_ACCEPTED, self._on_accepted)]
        try:
            self._server = ae.start_server((self.bind, self.port), block=False, evt_handlers=handlers)
        except OSError as exc:
            raise SourceError(f"cannot listen on port {self.port} ({type(exc).__name__}): give a free --port") from None

    def _on_accepted(self, event: Any) -> None:
        with self._cond:
            self.summary.associations += 1

    def _refuse(self, why: str, status: int) -> int:
        with self._cond:
            self.summary.refused[why] += 1
        return status

    def _on_store(self, event: Any) -> int:
        if self._stopping.is_set():
            return self._refuse("stopping", OUT_OF_RESOURCES)
        data = event.encoded_dataset(include_meta=True)
        if len(data) > self.limits.max_file_bytes:
            return self._refuse("too_large", OUT_OF_RESOURCES)
        if not _readable(data, str(event.request.AffectedSOPInstanceUID)):
            return self._refuse("unreadable", CANNOT_UNDERSTAND)
        name = f"{uuid.uuid4().hex}.dcm"
        partial = self.incoming / f".{name}.part"
        with open(partial, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, self.incoming / name)  # acknowledged only once durable
        with self._cond:
            self._pending.append(self.incoming / name)
            self.summary.received += 1
            self._last = time.monotonic()
            self._cond.notify_all()
        return 0x0000

    # -- batches --------------------------------------------------------------------------------
    def _due(self) -> bool:
        """Under the condition's lock: a full batch, or some instances and a quiet spell."""
        if len(self._pending) >= self.batch_size:
            return True
        return bool(self._pending) and time.monotonic() - self._last >= self.quiet_seconds

    def serve(self, stop: threading.Event) -> ListenSummary:
        """Ingest batches until ``stop`` is set, then close the port, ingest the rest and return the totals."""
        t0 = time.monotonic()
        try:
            while not stop.is_set():
                with self._cond:
                    self._cond.wait_for(lambda: self._due() or stop.is_set(), timeout=min(self.quiet_seconds, 0.5))
                    due = self._due()
                if due:
                    self._ingest_batch()
        finally:
            self._stopping.set()
            if self._server is not None:
                self._server.shutdown()  # ends the open associations' threads too
                self._server = None
        while self._pending:
            self._ingest_batch()
        self.summary.seconds = time.monotonic() - t0
        return self.summary

    def _ingest_batch(self) -> None:
        from lake.ingest import ingest

        with self._cond:
            taken, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
        chunk = self.spool / f"ingest-{uuid.uuid4().hex}"  # the folder ingest reads this batch only
        chunk.mkdir(mode=0o700)
        for path in taken:
            os.replace(path, chunk / path.name)
        try:
            done = ingest(self.lake, [chunk], key_file=self.key_file, **self.ingest_options)
        except BaseException:
            for path in chunk.iterdir():  # not committed: back to the spool for the next batch or listener
                os.replace(path, self.batch_dir / path.name)
            chunk.rmdir()
            raise
        shutil.rmtree(chunk)
        s = self.summary
        s.batches += 1
        s.seen += done.seen
        s.ingested += done.ingested
        s.duplicates += done.duplicates
        s.rejected += done.rejected
        s.updates += sum(done.updates.values())
        s.run_ids.append(done.run_id)
        if self.on_batch is not None:
            self.on_batch(done)

    def remove_empty_spool(self) -> None:
        """The spool's folders once nothing is left in them."""
        for folder in (*self.spool.glob("ingest-*"), self.incoming, self.batch_dir, self.spool):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _readable(data: bytes, announced: str) -> bool:
    """Whether the header reads and names the SOP Instance UID the request announced."""
    from pydicom import dcmread

    try:
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
        return str(ds.SOPInstanceUID) == announced
    except Exception:
        return False
