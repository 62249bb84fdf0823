"""``lake ingest SOURCE... --lake LAKE [--key-file KEY] [--workers N] [--strict] ...``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lake.cli.argtypes import non_negative_float, non_negative_int, port_number, positive_int, readable_file
from lake.cli.common import FileProgress, add_key_option, add_lake_option, add_memory_option

if TYPE_CHECKING:
    from lake.ingest import IngestSummary
    from lake.sources.filters import PullOptions
    from lake.sources.pacs import PullProgress

#: The studies line of a PACS pull, in this order.
STUDY_COUNTS = ("found", "pulled", "complete", "incomplete", "skipped", "failed", "deferred")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="de-identify and add DICOM files, folders or zips to a lake")
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="a folder (read recursively), a file or a .zip; the lake, its key and vault are never read; "
        "or a PACS: dicomweb://HOST:PORT/PATH, dicomweb+https://HOST:PORT/PATH, dimse://AET@HOST:PORT",
    )
    add_lake_option(p)
    add_memory_option(p)
    add_key_option(p)
    p.add_argument(
        "--workers",
        type=positive_int,
        default=max(1, min(os.cpu_count() or 1, 8)),
        metavar="N",
        help="worker processes, at least 1 (default: the number of cores, at most 8)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on an existing Dask distributed cluster, tcp://HOST:PORT, instead of local worker processes "
        "(every Dask worker must see the lake's folder at the same path); default: local workers",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if any file was rejected or a SOURCE held no files (default: exit 0 even with rejections)",
    )
    p.add_argument(
        "--recipe",
        metavar="FILE",
        type=readable_file,
        help="site rules in the deid recipe format applied on top of the profile (stricter only; "
        "see lake.deid.recipe); default: none",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: a bar on stderr)")
    p.add_argument(
        "--file-timeout",
        type=non_negative_float,
        default=300.0,
        metavar="S",
        help="seconds a file may take before it is rejected, 0 for no limit (default 300)",
    )
    p.add_argument(
        "--worker-memory-mb",
        type=non_negative_int,
        default=4096,
        metavar="MB",
        help="memory a worker may add per file before the file is rejected, 0 for no limit (default 4096)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=500,
        metavar="N",
        help="instances per commit, at least 1 (default 500)",
    )
    _add_pull_options(p)
    p.set_defaults(func=run)


def _add_pull_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "PACS sources (dicomweb://, dimse://)",
        "credentials come from --auth-file or the environment (LAKE_DICOMWEB_TOKEN, or LAKE_DICOMWEB_USER "
        "and LAKE_DICOMWEB_PASSWORD), never from the command line",
    )
    g.add_argument("--study-dates", metavar="FROM-TO", help="study date range YYYYMMDD-YYYYMMDD (either side open)")
    g.add_argument("--modality", action="append", metavar="M", help="studies holding M (repeatable; default: any)")
    g.add_argument("--accessions", metavar="CSV", type=readable_file, help="accession numbers to pull, from a CSV")
    g.add_argument("--patient-ids", metavar="CSV", type=readable_file, help="patient IDs to pull, from a CSV")
    g.add_argument("--max-requests", type=positive_int, default=4, metavar="N", help="requests at once (default 4)")
    g.add_argument(
        "--rate", type=non_negative_float, default=0.0, metavar="R", help="requests per second (default 0: no limit)"
    )
    g.add_argument("--retries", type=non_negative_int, default=3, metavar="N", help="retries with back-off (default 3)")
    g.add_argument("--window", metavar="HH:MM-HH:MM", help="start studies only in these hours, e.g. 19:00-07:00")
    g.add_argument("--auth-file", metavar="FILE", help="a file (mode 600): `Bearer TOKEN` or `Basic USER:PASSWORD`")
    g.add_argument("--calling-aet", default="LAKE", metavar="AET", help="dimse://: the lake's AE title (default LAKE)")
    g.add_argument(
        "--move-port",
        type=port_number,
        metavar="PORT",
        help="dimse://: retrieve by C-MOVE to the lake's own storage SCP on PORT (default: by C-GET)",
    )
    g.add_argument(
        "--move-to",
        metavar="AET",
        help="dimse://: the C-MOVE destination AE title the PACS knows at --move-port (default: --calling-aet)",
    )
    g.add_argument(
        "--move-bind",
        default="0.0.0.0",
        metavar="ADDR",
        help="dimse://: the address the C-MOVE storage SCP listens on (default 0.0.0.0: every interface)",
    )


def _pull_options(args: argparse.Namespace) -> PullOptions:
    from lake.sources.filters import PullOptions, Window, read_id_csv

    return PullOptions(
        study_dates=args.study_dates,
        modalities=tuple(m.upper() for m in args.modality or ()),
        accession_numbers=read_id_csv(args.accessions, "accession") if args.accessions else (),
        patient_ids=read_id_csv(args.patient_ids, "patient") if args.patient_ids else (),
        max_requests=args.max_requests,
        rate=args.rate or None,
        retries=args.retries,
        window=Window.parse(args.window) if args.window else None,
        auth_file=Path(args.auth_file) if args.auth_file else None,
        calling_aet=args.calling_aet,
        move_port=args.move_port,
        move_aet=args.move_to,
        move_bind=args.move_bind,
    )


class PullBar:
    """Studies and instances per second of a PACS pull, on the progress bar."""

    def __init__(self, progress: FileProgress) -> None:
        self.progress = progress

    def __call__(self, p: PullProgress) -> None:
        self.progress.bar.set_postfix_str(
            f"studies {p.studies_done}/{p.studies_planned} ({p.studies_per_second:.2f}/s), "
            f"{p.instances_per_second:.1f} instances/s"
        )


def print_summary(summary: IngestSummary, vault_log: Path | None = None) -> None:
    """The summary on stdout; ``vault_log`` is the run's log beside the key, named when files were rejected."""
    rate = summary.seen / summary.seconds if summary.seconds else 0.0
    mb = summary.bytes_read / 1e6
    print(
        f"seen {summary.seen}, ingested {summary.ingested}, duplicates {summary.duplicates}, "
        f"rejected {summary.rejected} in {summary.seconds:.1f} s ({rate:.1f} files/s, "
        f"{mb / summary.seconds if summary.seconds else 0:.1f} MB/s); run {summary.run_id}"
    )
    if summary.pixel_status:
        print("pixels: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.pixel_status.items())))
    if summary.reject_reasons:
        print("rejected: " + ", ".join(f"{k} {v}" for k, v in summary.reject_reasons.most_common()))
    if summary.rejected and vault_log is not None:
        print(f"the rejected files are listed in {vault_log} (the vault, beside the key)")
    if summary.warnings:
        print("warnings: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.warnings.items())))
    from lake.deid.ner import NO_NER_WARNING, NOT_INSTALLED

    if summary.warnings.get(NO_NER_WARNING):  # issue 12: once per run, with how to install the step
        print(NOT_INSTALLED)
    if summary.updates or summary.rejection_notes or summary.rejected_by_note:  # issue 16: corrections
        parts = [f"updates {k} {v}" for k, v in sorted(summary.updates.items())]
        parts += [f"rejection notes {summary.rejection_notes} (instances removed {summary.instances_rejected})"]
        parts += [f"rejected instances not stored {summary.rejected_by_note}"] if summary.rejected_by_note else []
        print("corrections: " + ", ".join(parts))
    if summary.identity:
        print("identity: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.identity.items())))
    if summary.studies:
        s = summary.studies
        counts = ", ".join(f"{k} {s.get('studies_' + k, 0)}" for k in STUDY_COUNTS)
        print(
            f"studies: {counts}; instances {s.get('instances_received', 0)} received "
            f"of {s.get('instances_expected', 0)} reported"
        )


def run(args: argparse.Namespace) -> int:
    from lake.config import LakePaths, default_key_path, read_config
    from lake.ingest import ingest
    from lake.ingest.run import IngestInterrupted, vault_log_path

    pull = _pull_options(args)
    progress = FileProgress("ingest", enabled=not args.no_progress)
    try:
        summary = ingest(
            args.lake,
            args.sources,
            key_file=args.key_file,
            workers=args.workers,
            on_file=progress,
            on_message=None if args.quiet else lambda m: print(m, file=sys.stderr),
            recipe=args.recipe,
            file_timeout=args.file_timeout or None,
            worker_memory_bytes=args.worker_memory_mb * 1024**2 if args.worker_memory_mb else None,
            batch_size=args.batch_size,
            pull=pull,
            on_progress=PullBar(progress),
            scheduler=args.scheduler,
        )
    except IngestInterrupted as exc:
        progress.close()
        print(
            f"lake ingest: interrupted; {exc.summary.ingested} instances committed; "
            "run the same command again to complete it",
            file=sys.stderr,
        )
        return exc.exit_code
    finally:
        progress.close()
    key_path = Path(args.key_file) if args.key_file else default_key_path(read_config(LakePaths(args.lake)).lake_id)
    print_summary(summary, vault_log_path(key_path, summary.run_id))
    if args.strict and (summary.rejected or summary.empty_sources):
        problems = [f"{summary.rejected} file(s) rejected"] if summary.rejected else []
        problems += [f"{summary.empty_sources} source(s) held no files"] if summary.empty_sources else []
        print(f"lake ingest: --strict: {', '.join(problems)}; exit 1", file=sys.stderr)
        return 1
    return 0
