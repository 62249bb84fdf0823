"""``lake forget --lake LAKE (--patient PSEUDONYM | --original-id ID)``: withdraw a patient."""

from __future__ import annotations

import argparse

from lake.cli.common import add_key_option, add_lake_option, add_memory_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("forget", help="remove a patient's rows and pixels and vacuum every old file that held them")
    add_lake_option(p)
    add_memory_option(p)
    add_key_option(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--patient", metavar="PSEUDONYM", help="the patient's pseudonym (PatientID in the lake)")
    who.add_argument("--original-id", metavar="ID", help="the original patient ID, looked up in the vault's crosswalk")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lake.maintenance.forget import forget

    s = forget(args.lake, patient=args.patient, original_id=args.original_id, key_file=args.key_file)
    print(
        f"forgot {s.instances} instances: {s.rows_deleted} rows deleted, {s.arrays_deleted} pixel arrays "
        f"deleted, {s.arrays_compacted} compacted, {s.files_vacuumed} old files vacuumed; run {s.run_id}"
    )
    return 0
