"""The append-only ``runs`` table: one audit row per operation on a lake, and run ids."""

from __future__ import annotations

import getpass
import json
import os
import secrets
from datetime import UTC, datetime
from typing import Any

from lake import __version__
from lake.catalog.tables import append, to_arrow
from lake.config import LakePaths
from lake.crashpoints import crash_point
from lake.fixity import record_table_fixity
from lake.headers.schema import load_table_schema


def utc_now() -> datetime:
    """Current UTC time as a naive timestamp (how the tables store times)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_run_id(prefix: str) -> str:
    """A sortable unique run id: ``prefix`` (R ingest, V verify, F forget...), UTC time, random suffix."""
    return datetime.now(UTC).strftime(f"{prefix}%Y%m%dT%H%M%S-") + secrets.token_hex(3)


def append_run(
    paths: LakePaths,
    run_id: str,
    operation: str,
    started: datetime,
    parameters: dict[str, Any],
    counts: dict[str, Any],
    outcome: str,
) -> None:
    """One row in the append-only ``runs`` table (parameters and counts must carry no PHI)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    row = {
        "run_id": run_id,
        "operation": operation,
        "started_at": started,
        "finished_at": utc_now(),
        "os_user": user,
        "lake_version": __version__,
        "parameters": json.dumps(parameters, sort_keys=True),
        "counts": json.dumps(counts, sort_keys=True, default=str),
        "outcome": outcome,
    }
    append(paths.table("runs"), to_arrow([row], load_table_schema("runs")))
    crash_point("runs.after_append")
    record_table_fixity(paths, run_id)
