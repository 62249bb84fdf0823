"""``lake export nifti --lake LAKE (--sql "SELECT DISTINCT SeriesInstanceUID FROM ..." | --cohort MANIFEST)
--out DIR [--correct-tilt] [--irregular split|refuse|resample]``.

Registered by ``lake.cli.export_cmd`` through :func:`add_nifti_parser` on its ``export``
subcommands. Prints counts, the files written (named from pseudonyms) and why series were refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lake.cli.common import add_key_option, add_lake_option, add_memory_option

IRREGULAR_CHOICES = ("split", "refuse", "resample")


def add_nifti_parser(export_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = export_subparsers.add_parser(
        "nifti",
        help="write series as NIfTI volumes with BIDS JSON sidecars (as dcm2niix lays them out)",
        description="Write each selected series as .nii.gz volumes with JSON sidecars under DIR/sub-<pseudonym>/, "
        "plus participants.tsv. Several stacks at the same positions become one 4-D image; gantry tilt is "
        "written as acquired (or resampled with --correct-tilt); irregular slice spacing is never written "
        "as a regular grid.",
    )
    add_lake_option(p)
    add_memory_option(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--sql", metavar="SQL", help="one query with a SeriesInstanceUID column (quote it)")
    source.add_argument("--cohort", metavar="MANIFEST", type=Path, help="a manifest written by `lake cohort save`")
    p.add_argument("--out", required=True, metavar="DIR", type=Path, help="the folder to write (outside the lake)")
    p.add_argument("--correct-tilt", action="store_true", help="resample gantry-tilted stacks to an orthogonal grid")
    p.add_argument(
        "--irregular",
        choices=IRREGULAR_CHOICES,
        default="split",
        help="irregular slice spacing: split into parts of equal spacing (default), refuse the series, "
        "or resample to the smallest spacing",
    )
    add_key_option(p)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="as lake -v")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="as lake -q")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import lake
    from lake.export.nifti import export_selection

    lk = lake.open(args.lake, key_file=args.key_file)
    result = export_selection(
        lk, args.out, sql=args.sql, cohort=args.cohort, correct_tilt=args.correct_tilt, irregular=args.irregular
    )
    for written in result.written:
        shape = "x".join(str(n) for n in written.shape)
        print(f"wrote {written.nifti} ({shape})")
    for refused in result.refused:
        print(f"refused {refused.name}: {refused.reason}")
    print(f"{len(result.written)} volumes written, {len(result.refused)} refused, in {args.out}")
    return 1 if result.refused and not result.written else 0
