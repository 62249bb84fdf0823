"""The memory budget of a command, and the DuckDB connections that honour it.

Every heavy command (optimize, verify, forget, vacuum, replicate, sql, cohort, export, ingest) runs
within one budget: ``--memory-limit`` (``4GB``, ``512MB``, ``1.5GiB``), else ``LAKE_MEMORY_LIMIT``
in the environment, else :func:`default_limit`: a quarter of the machine's RAM, at most 4 GB. Not
DuckDB's own default (80% of RAM): a lake command shares the machine with its ingest workers,
notebooks and other users, and an optimize that took 80% once met the kernel's OOM killer.
``LAKE_MEMORY_LIMIT=none`` lifts the lake's limit (DuckDB's defaults: every core, 80% of RAM), for
benchmarks that measure the unbounded "before".

Every DuckDB connection in ``lake/`` comes from :func:`connect` (or takes :func:`duckdb_config`):
``memory_limit`` (a share of the budget: Arrow batches and Python live beside DuckDB),
``threads`` (DuckDB wants a few hundred MB per thread to sort and join), a private spill folder
(``temp_directory``, removed when the connection closes) and, where the result's order does not
matter, ``preserve_insertion_order = false`` (DuckDB then streams instead of buffering). Arrow
work on the client side reads in record batches sized by :meth:`MemoryBudget.batch_rows`.

The spill folder is made under the system's temporary folder (``TMPDIR``), mode 0700, never in
the lake: ``lake sql`` may read a lake it cannot write, ``replicate`` and ``audit-phi`` walk the
lake's files, and a spill file holds rows of the lake. Its name carries the pid of the process
that made it (``lake-optimize-pid4242-k3j2h1x0``): a process killed with ``kill -9`` or by the OOM
killer cannot remove its folder (an optimize at 10 M instances leaves several GB), so every new
spill folder first removes the folders of this user whose process is gone.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lake.errors import ConfigError

if TYPE_CHECKING:  # duckdb loads with the first connection, not with the CLI's parser
    import duckdb

ENV = "LAKE_MEMORY_LIMIT"
UNBOUNDED = "none"
#: The default never exceeds this, however large the machine (a lake command is not a database server).
DEFAULT_CAP = 4 * 1024**3
DEFAULT_FRACTION = 0.25
#: Below this DuckDB cannot read the lake's wide rows (a few KB of ``header_json`` each): at a
#: 100 MB budget (60 MB for DuckDB) it failed to allocate its Parquet reader's buffers.
MINIMUM = 128 * 1000**2
#: DuckDB's share of the budget; the rest is for Arrow batches in flight, the Parquet writer's
#: row group and Python itself.
DUCKDB_SHARE = 0.6
#: Memory per DuckDB thread to sort and aggregate without thrashing its spill files.
BYTES_PER_THREAD = 256 * 1024**2
#: The share of the budget one Arrow batch from DuckDB may take.
BATCH_SHARE = 0.02
#: The share of the budget a row group buffered for the Parquet writer may take (pyarrow writes a
#: row group from one table in memory).
ROW_GROUP_SHARE = 0.2

_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]+)\s*")


class MemoryLimitError(ConfigError):
    """A ``--memory-limit`` or ``LAKE_MEMORY_LIMIT`` value that is not a size this module accepts."""


def parse_size(text: str, origin: str = "--memory-limit") -> int:
    """Bytes of a size such as ``4GB``, ``512MB``, ``1.5GiB`` (KB/MB/GB/TB are powers of 1000, as
    DuckDB reads them; KiB/MiB/GiB/TiB powers of 1024). Raises :class:`MemoryLimitError` naming
    ``origin`` for anything else, or a size below 128 MB."""
    hint = f"{origin} takes a size with a unit, e.g. 4GB, 512MB or 1.5GiB"
    match = _SIZE.fullmatch(text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise MemoryLimitError(f"{text!r} is not a size: {hint} (units: B, KB, MB, GB, TB, KiB ... TiB)")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(value) or value < MINIMUM:
        raise MemoryLimitError(f"{text!r} is too small: {origin} must be at least 128MB")
    return int(value)


def total_memory() -> int:
    """Physical RAM in bytes (also inside a cgroup limit, when one is set and smaller)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return int(total)


def default_limit() -> int:
    """min(25% of RAM, 4 GB): leaves the rest of the machine to ingest workers and other users."""
    return max(MINIMUM, min(int(total_memory() * DEFAULT_FRACTION), DEFAULT_CAP))


@dataclass(frozen=True)
class MemoryBudget:
    """What one command may use: ``limit`` bytes in all (None: unbounded, DuckDB's defaults)."""

    limit: int | None

    @property
    def threads(self) -> int | None:
        """DuckDB threads: every core, as many as the budget feeds (None: DuckDB's default)."""
        if self.limit is None:
            return None
        return max(1, min(os.cpu_count() or 1, int(self.limit * DUCKDB_SHARE) // BYTES_PER_THREAD))

    @property
    def duckdb_bytes(self) -> int | None:
        return None if self.limit is None else int(self.limit * DUCKDB_SHARE)

    def batch_rows(self, row_bytes: int, most: int, share: float = BATCH_SHARE) -> int:
        """Rows per Arrow batch (or buffered row group) for rows of about ``row_bytes`` bytes each
        in memory: at most ``most`` (the natural size), fewer when ``share`` of the budget holds
        fewer; at least 1,024."""
        if self.limit is None:
            return most
        fits = int(self.limit * share) // max(row_bytes, 1)
        return max(1024, min(most, fits))

    def describe(self) -> str:
        return "unbounded" if self.limit is None else f"{self.limit / 1e6:.0f} MB"


_chosen: MemoryBudget | None = None


def from_environment() -> MemoryBudget:
    """``LAKE_MEMORY_LIMIT`` (a size or ``none``), else the default."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return MemoryBudget(default_limit())
    if text.lower() == UNBOUNDED:
        return MemoryBudget(None)
    return MemoryBudget(parse_size(text, ENV))


def current() -> MemoryBudget:
    """The budget in force: the one :func:`use` set, else the environment's, else the default."""
    return _chosen if _chosen is not None else from_environment()


@contextmanager
def use(limit: int | MemoryBudget | None) -> Iterator[MemoryBudget]:
    """Make ``limit`` (bytes; None: the environment's or the default) the budget within the block."""
    global _chosen
    previous = _chosen
    budget = limit if isinstance(limit, MemoryBudget) else (MemoryBudget(limit) if limit is not None else current())
    _chosen = budget
    try:
        yield budget
    finally:
        _chosen = previous


def duckdb_config(
    temp_directory: str | None, ordered: bool = True, budget: MemoryBudget | None = None
) -> dict[str, Any]:
    """The ``config`` of a budgeted DuckDB connection (no extension is ever installed or loaded)."""
    budget = budget or current()
    config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    if temp_directory is not None:
        config["temp_directory"] = temp_directory
    if budget.limit is not None:
        config["memory_limit"] = f"{budget.duckdb_bytes}B"
        config["threads"] = budget.threads
    if not ordered:
        config["preserve_insertion_order"] = False
    return config


#: ``lake-{purpose}-pid{pid}-{mkdtemp's random suffix}``: the folders :func:`spill_folder` makes.
_SPILL_NAME = re.compile(r"lake-[A-Za-z0-9_.-]+-pid([0-9]+)-[a-z0-9_]+")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale_spill_folders(parent: str | None = None) -> list[str]:
    """Remove the spill folders under ``parent`` (default ``TMPDIR``) that this user's processes made
    and that outlived them (killed before they could clean up); returns the folders removed."""
    parent = parent or tempfile.gettempdir()
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    uid = os.getuid()
    for entry in entries:
        match = _SPILL_NAME.fullmatch(entry.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


def spill_folder(purpose: str = "spill") -> str:
    """A new private folder (mode 0700) for spill files, named after ``purpose`` and this process's
    pid; the caller removes it. Stale folders of dead processes are removed first."""
    remove_stale_spill_folders()
    return tempfile.mkdtemp(prefix=f"lake-{purpose}-pid{os.getpid()}-")


@contextmanager
def private_folder(purpose: str) -> Iterator[Path]:
    """A :func:`spill_folder` removed when the block ends (or by the next command after a kill)."""
    folder = spill_folder(purpose)
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def connect(purpose: str = "lake", ordered: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection within the current budget, spilling to a private folder
    that is removed (with the connection closed) when the block ends.

    ``ordered=False`` where no result depends on the order rows were read in (counts, sets, joins
    whose result is sorted or consumed as a set): DuckDB may then stream and reorder.
    """
    import duckdb

    with private_folder(purpose) as spill:
        con = duckdb.connect(":memory:", config=duckdb_config(str(spill), ordered))
        try:
            yield con
        finally:
            con.close()
