"""Batch pipeline: an archive export (folders and zip files) into a lake, as described by a job file.

    .venv/bin/python pipelines/archive_to_lake.py pipelines/jobs/demo.toml

A job file (TOML) names the lake, the key, the sources and the lake's de-identification settings
(used only when the lake is created; an existing lake keeps its own). Re-running a job is safe:
ingest is idempotent, so a job that was interrupted is completed by running it again.

    lake = "/data/lakes/neuro"
    key_file = "/secure/keys/neuro.key"       # optional; default $LAKE_HOME/keys/<lake id>.key
    sources = ["/archive/export-2024", "/archive/export-2025.zip"]
    workers = 2
    strict = false                            # exit 1 when any file was rejected

    [deid]                                    # optional, for a new lake
    options = ["retain_longitudinal_modified_dates", "retain_patient_characteristics"]
    date_offset_days = [30, 1095]
    burned_in_policy = "mask-or-quarantine"

Sources may be written relative to the job file. The special source "demo" stands for the DICOM
files that the pydicom and pydicom-data packages ship.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import lake
from lake.cli.common import FileProgress
from lake.cli.ingest_cmd import print_summary
from lake.config import LakePaths
from lake.demo import demo_sources
from lake.errors import ConfigError, LakeError
from lake.ingest import ingest


def load_job(path: Path) -> dict:  # type: ignore[type-arg]
    try:
        job = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read job file {path}: {exc}") from exc
    for required in ("lake", "sources"):
        if required not in job:
            raise ConfigError(f"job file {path} has no {required!r}")
    base = path.parent
    sources: list[Path] = []
    for source in job["sources"]:
        if source == "demo":
            sources.extend(demo_sources())
        else:
            p = Path(source).expanduser()
            sources.append(p if p.is_absolute() else base / p)
    job["sources"] = sources
    lake_path = Path(job["lake"]).expanduser()
    job["lake"] = lake_path if lake_path.is_absolute() else base / lake_path
    return job


def run(job_path: Path, show_progress: bool = True) -> int:
    job = load_job(job_path)
    key_file = job.get("key_file")
    if not LakePaths(job["lake"]).exists():
        deid = job.get("deid", {})
        kwargs = {k: deid[k] for k in ("options", "burned_in_policy", "keep_crosswalk") if k in deid}
        if "date_offset_days" in deid:
            kwargs["date_offset_days"] = tuple(deid["date_offset_days"])
        lake.init(job["lake"], key_file=key_file, **kwargs)
    progress = FileProgress("ingest", enabled=show_progress)
    try:
        summary = ingest(
            job["lake"], job["sources"], key_file=key_file, workers=int(job.get("workers", 2)), on_file=progress
        )
    finally:
        progress.close()
    print_summary(summary)
    return 1 if job.get("strict") and summary.rejected else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", type=Path, help="job file (TOML)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    try:
        return run(args.job, show_progress=not args.no_progress)
    except LakeError as exc:
        print(f"archive_to_lake: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
