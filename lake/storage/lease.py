"""The lake's write lease: one writer at a time, on any storage, including object stores.

A local lake keeps its ``flock`` (:mod:`lake.lock`), which the operating system releases when the
holder dies. An object store has no locks, so a writer holds a *lease*: a small JSON object created
with put-if-absent, naming a random owner token and an expiry, renewed by compare-and-swap while the
work runs and released by marking it expired (also by compare-and-swap, so a release never removes a
lease somebody else took). A writer that dies stops renewing; once its lease has expired the next
writer takes it over. Commits check the lease first (:meth:`Lease.check`), so a writer that lost its
lease (paused longer than the lease's time to live) commits nothing more.

Expiry compares wall clocks of different hosts: keep them in sync (NTP) to well within ``ttl``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from lake.errors import LeaseLostError, LockTimeoutError, StorageNotFoundError
from lake.storage.base import ObjectInfo, Storage

logger = logging.getLogger(__name__)

LEASE_PATH = "_lake_lease.json"
DEFAULT_TTL = 60.0


def _body(owner: str, expires: float) -> bytes:
    return json.dumps(
        {"owner": owner, "expires": expires, "host": socket.gethostname(), "pid": os.getpid()}, sort_keys=True
    ).encode()


def _expired(data: bytes, now: float) -> bool:
    try:
        return float(json.loads(data)["expires"]) <= now
    except (ValueError, KeyError, TypeError):
        return True  # not a lease this version wrote: treat as free


@dataclass
class Lease:
    """A lease held on ``storage`` (see the module documentation)."""

    storage: Storage
    path: str
    owner: str
    ttl: float
    version: str
    expires: float
    clock: Callable[[], float] = time.time
    lost: bool = False
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _swap(self, expires: float) -> ObjectInfo | None:
        return self.storage.replace(self.path, _body(self.owner, expires), self.version)

    def renew(self) -> None:
        """Extend the lease by ``ttl`` from now; :class:`LeaseLostError` if it is no longer ours."""
        with self._guard:
            if self.lost:
                raise LeaseLostError(f"the write lease on {self.storage.url} was lost; run the command again")
            expires = self.clock() + self.ttl
            info = self._swap(expires)
            if info is None:
                self.lost = True
                raise LeaseLostError(f"the write lease on {self.storage.url} was taken over; run the command again")
            self.version, self.expires = info.version, expires

    def check(self) -> None:
        """Before a commit: the lease is still ours and unexpired (renewing it if half its time is gone)."""
        if self.lost or self.clock() >= self.expires:
            self.lost = True
            raise LeaseLostError(f"the write lease on {self.storage.url} expired; run the command again")
        if self.clock() >= self.expires - self.ttl / 2:
            self.renew()

    def release(self) -> None:
        """Mark the lease free (compare-and-swap: never frees a lease another writer holds)."""
        with self._guard:
            if not self.lost:
                self._swap(0.0)
            self.lost = True


def acquire(
    storage: Storage,
    path: str = LEASE_PATH,
    ttl: float = DEFAULT_TTL,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
    pause: Callable[[float], None] = time.sleep,
) -> Lease:
    """Take the lease at ``path``, waiting while another writer holds an unexpired one."""
    if ttl <= 0:
        raise ValueError(f"a lease's time to live is positive, not {ttl}")
    owner = secrets.token_hex(16)
    started = time.monotonic()
    told = False
    delay = 0.05
    while True:
        expires = clock() + ttl
        info = storage.create(path, _body(owner, expires))
        if info is not None:
            return Lease(storage, path, owner, ttl, info.version, expires, clock)
        try:
            data, current = storage.get(path)
        except StorageNotFoundError:
            continue  # released and removed in between: try to create it again
        if _expired(data, clock()):
            taken = storage.replace(path, _body(owner, expires), current.version)
            if taken is not None:
                logger.info("took over an expired write lease on %s", storage.url)
                return Lease(storage, path, owner, ttl, taken.version, expires, clock)
            continue  # somebody else changed it first: look again
        if not told:
            message = f"another writer holds the write lease on {storage.url}; waiting for it to finish"
            logger.info(message)
            if on_wait:
                on_wait(message)
            told = True
        if timeout is not None and time.monotonic() - started > timeout:
            raise LockTimeoutError(f"gave up after {timeout:.0f} s waiting for the write lease on {storage.url}")
        pause(delay)
        delay = min(delay * 2, 1.0)


@contextmanager
def hold_lease(
    storage: Storage,
    path: str = LEASE_PATH,
    ttl: float = DEFAULT_TTL,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    renew_every: float | None = None,
) -> Iterator[Lease]:
    """Hold the lease for a block, renewing it in a background thread every ``renew_every`` seconds
    (default a third of ``ttl``; ``0`` for no renewal thread), and release it at the end."""
    lease = acquire(storage, path, ttl, timeout, on_wait)
    every = ttl / 3 if renew_every is None else renew_every
    stop = threading.Event()

    def keep_renewing() -> None:
        while not stop.wait(every):
            try:
                lease.renew()
            except LeaseLostError:
                logger.warning("lost the write lease on %s", storage.url)
                return
            except Exception:  # a network error: try again at the next beat, the lease has time left
                logger.warning("could not renew the write lease on %s; will retry", storage.url)

    renewer = threading.Thread(target=keep_renewing, name="lake-lease", daemon=True) if every > 0 else None
    if renewer:
        renewer.start()
    try:
        yield lease
    finally:
        stop.set()
        if renewer:
            renewer.join()
        lease.release()
