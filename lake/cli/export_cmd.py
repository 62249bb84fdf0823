"""``lake export teaching --lake LAKE (--sql SQL | --cohort MANIFEST) --out DIR [--zip] [--title T] [--notes F]``
and ``lake export nifti ...`` (:mod:`lake.cli.nifti_cmd`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lake.cli.common import add_key_option, add_lake_option, add_memory_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export studies for use outside the lake (teaching sets, NIfTI volumes)",
        description="Export de-identified studies from one snapshot of the lake in a form people open anywhere.",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    from lake.cli.nifti_cmd import add_nifti_parser

    add_nifti_parser(kinds)
    t = kinds.add_parser(
        "teaching",
        help="a teaching set: DICOM files with a DICOMDIR, PNG previews, index.html and manifest.json",
        description="Write the chosen studies as de-identified DICOM Part 10 files with a DICOMDIR, windowed PNG "
        "previews, a static index.html (thumbnails, de-identified study facts, teaching notes, an unknown-case mode "
        "that hides diagnoses until clicked) and manifest.json. Quarantined instances are left out and counted.",
    )
    add_lake_option(t)
    add_memory_option(t)
    chosen = t.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "--sql",
        metavar="SQL",
        help='one query with a StudyInstanceUID column, e.g. "SELECT DISTINCT StudyInstanceUID FROM instances"',
    )
    chosen.add_argument(
        "--cohort", metavar="MANIFEST", type=Path, help="a cohort saved by `lake cohort save` (with StudyInstanceUID)"
    )
    t.add_argument(
        "--out", required=True, metavar="DIR", type=Path, help="a new or empty folder outside every lake and key folder"
    )
    t.add_argument("--zip", action="store_true", help="also pack the set into DIR.zip (default: off)")
    t.add_argument(
        "--title", default="Teaching set", metavar="TEXT", help='the index page title (default: "Teaching set")'
    )
    t.add_argument(
        "--notes",
        metavar="FILE",
        type=Path,
        help="per-case notes, CSV or YAML: study (StudyInstanceUID) or case (number), title, history, findings, "
        "diagnosis, discussion (default: none)",
    )
    add_key_option(t)
    t.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="as lake -v")
    t.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="as lake -q")
    t.set_defaults(func=run_teaching)


def run_teaching(args: argparse.Namespace) -> int:
    import lake
    from lake.export.teaching import export_teaching

    lk = lake.open(args.lake, key_file=args.key_file)
    done = export_teaching(
        lk,
        args.out,
        sql=args.sql,
        cohort=args.cohort,
        make_zip=args.zip,
        title=args.title,
        notes=args.notes,
        key_file=args.key_file,
    )
    print(f"exported {done.studies} studies, {done.series} series, {done.instances} instances to {done.out}")
    left = done.quarantined + done.without_pixels
    if left:
        print(f"left out {left} instances: {done.quarantined} quarantined, {done.without_pixels} without pixels")
    if done.missing_studies:
        print(f"{done.missing_studies} selected studies are not in the lake's current snapshot")
    if done.zip_path is not None:
        print(f"zip: {done.zip_path}")
    print(f"open {done.out / 'index.html'}; run {done.run_id}")
    return 0
