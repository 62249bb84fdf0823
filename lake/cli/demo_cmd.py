"""``lake demo [--lake LAKE]``: build a demo lake of synthetic patient histories (or of test files), show it."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

import lake
from lake.cli.common import FileProgress, add_key_option, print_frame, print_mapping
from lake.cli.info_cmd import describe
from lake.cli.ingest_cmd import print_summary
from lake.errors import SourceError


def _patients(text: str) -> int:
    from lake.cli.argtypes import positive_int
    from lake.demo.archive import FAMILY_NAMES

    value = positive_int(text)
    if value > len(FAMILY_NAMES):
        raise argparse.ArgumentTypeError(f"must be at most {len(FAMILY_NAMES)}, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="build a demo lake: synthetic patients imaged over years, made from the DICOM files pydicom ships",
    )
    from lake.cli.argtypes import non_negative_int, positive_int

    p.add_argument("--lake", default="demo-lake", metavar="LAKE", help="where to build it (default ./demo-lake)")
    add_key_option(p)
    p.add_argument(
        "--from-test-files",
        action="store_true",
        help="ingest the test files of pydicom and pydicom-data as they are instead (two patients with follow-ups)",
    )
    p.add_argument(
        "--patients", type=_patients, default=40, metavar="N", help="patients in the synthetic archive (default 40)"
    )
    p.add_argument(
        "--seed",
        type=non_negative_int,
        default=13,
        metavar="S",
        help="the archive's seed: same seed, same files (default 13)",
    )
    p.add_argument(
        "--archive",
        metavar="DIR",
        help="keep the synthetic archive in DIR (new or empty, outside the lake; default: a temporary folder, "
        "deleted after the ingest)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=max(1, min(os.cpu_count() or 1, 8)),
        metavar="N",
        help="worker processes, at least 1 (default: the number of cores, at most 8)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: a bar on stderr)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.from_test_files:
        return _run_test_files(args)
    from lake.demo import SUMMARY_QUERIES, ArchiveSpec, build_demo
    from lake.ingest.run import vault_log_path

    spec = ArchiveSpec(patients=args.patients, seed=args.seed)
    if not args.quiet:  # writing the archive takes a few seconds before the first file is ingested
        print(f"writing a synthetic archive of {spec.patients} patients (seed {spec.seed}) ...", file=sys.stderr)
    progress = FileProgress("ingest", enabled=not args.no_progress)
    try:
        built = build_demo(
            args.lake,
            spec,
            key_file=args.key_file,
            workers=args.workers,
            archive_dir=args.archive,
            on_file=progress,
            on_message=None if args.quiet else lambda m: print(m, file=sys.stderr),
        )
    finally:
        progress.close()
    archive = built.archive
    if not args.quiet:
        studies = archive.studies
        modalities = Counter(s.modality for s in studies)
        years = sorted({s.study_date.year for s in studies})
        where = f"kept in {built.kept}" if built.kept else "in a temporary folder, deleted after the ingest"
        print(
            f"demo archive: {len(archive.patients)} synthetic patients, {len(studies)} studies "
            f"({', '.join(f'{m} {n}' for m, n in modalities.most_common())}) from {years[0]} to {years[-1]}, "
            f"{archive.files} files ({where})"
        )
    lk = lake.open(args.lake, key_file=args.key_file)
    print_summary(built.summary, vault_log_path(lk.key_path, built.summary.run_id))
    if args.quiet:
        return 0
    print(f"\nlake {lk.root}:")
    print_mapping(describe(lk))
    print(f'\nnext: lake sql --lake {args.lake} "SELECT * FROM timeline LIMIT 10"')
    for title, query in SUMMARY_QUERIES:
        print(f"\n{title}:")
        print_frame(lk.sql(query), "table")
    return 0


def _run_test_files(args: argparse.Namespace) -> int:
    from lake.demo import TEST_FILES_QUERY, demo_sources
    from lake.ingest import ingest
    from lake.ingest.run import vault_log_path

    sources = demo_sources()
    if not sources:
        raise SourceError("no demo files found: install pydicom and pydicom-data (pip install -e .)")
    if not args.quiet:
        print("demo sources: " + ", ".join(str(s) for s in sources))
    progress = FileProgress("ingest", enabled=not args.no_progress)
    try:
        summary = ingest(
            args.lake,
            sources,
            key_file=args.key_file,
            workers=args.workers,
            on_file=progress,
            on_message=None if args.quiet else lambda m: print(m, file=sys.stderr),
        )
    finally:
        progress.close()
    lk = lake.open(args.lake, key_file=args.key_file)
    print_summary(summary, vault_log_path(lk.key_path, summary.run_id))
    if args.quiet:
        return 0
    print(f"\nlake {lk.root}:")
    print_mapping(describe(lk))
    print(f"\nexample query:\n{TEST_FILES_QUERY}\n")
    print_frame(lk.sql(TEST_FILES_QUERY), "table")
    print(f'\nnext: lake sql --lake {args.lake} "SELECT * FROM studies LIMIT 5"')
    return 0
