"""``lake init LAKE [--key-file KEY] [--profile research|pass-through] [--option NAME]... [--only-options] ...``."""

from __future__ import annotations

import argparse

import lake
from lake.cli.argtypes import readable_file
from lake.cli.common import add_key_option
from lake.config import OnUpdate
from lake.deid.identity import DEFAULT_IDENTITY, PatientIdentity
from lake.deid.policy import PixelPolicy
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, OPTION_NAMES, PROFILE_NAMES, ProfileName, ProfileOption


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a lake and its secret key (kept outside the lake)")
    p.add_argument("lake", metavar="LAKE", help="the lake folder to create (must not hold a lake yet)")
    add_key_option(p)
    p.add_argument(
        "--profile",
        choices=PROFILE_NAMES,
        default=ProfileName.RESEARCH.value,
        help="the de-identification profile, fixed for the lake's life: research (PS3.15 with keyed pseudonyms, "
        "UIDs and date shifts) or pass-through (for data already de-identified: values kept as they are, only "
        "files with the de-identification marks accepted, every text value audited for PHI; no --option); "
        "default research",
    )
    defaults = ", ".join(o.value for o in DEFAULT_RESEARCH_OPTIONS)
    p.add_argument(
        "--option",
        action="append",
        dest="options",
        choices=OPTION_NAMES,
        metavar="OPTION",
        help="a PS3.15 profile option added to the default research profile (repeatable; "
        f"retain_longitudinal_full_dates replaces retain_longitudinal_modified_dates), or the lake's own "
        f"hipaa_safe_harbor_ages (ages over 89 become 90 or older; off by default); default: {defaults}; "
        f"choices: {', '.join(OPTION_NAMES)}",
    )
    p.add_argument(
        "--only-options",
        action="store_true",
        help="use only the --option values given, not the defaults (none given: the Basic Profile alone); default: off",
    )
    p.add_argument(
        "--date-offset-days",
        nargs=2,
        type=int,
        metavar=("MIN", "MAX"),
        default=(30, 1095),
        help="range of the per-patient backwards date shift in whole days, 0 < MIN <= MAX <= 3650 (default 30 1095)",
    )
    p.add_argument(
        "--burned-in-policy",
        choices=[x.value for x in PixelPolicy],
        default=PixelPolicy.MASK_OR_QUARANTINE.value,
        help="what to store of pixels that may carry burned-in text: mask (blank known regions), quarantine "
        "(header row only), keep-flagged (unchanged, flagged), mask-or-quarantine (mask where a rule knows "
        "the region, else quarantine); default mask-or-quarantine",
    )
    p.add_argument(
        "--patient-identity",
        choices=[x.value for x in PatientIdentity],
        default=DEFAULT_IDENTITY.value,
        help="what identifies a patient, fixed for the lake's life: patient_id (PatientID alone, one MRN "
        "domain; IssuerOfPatientID ignored) or issuer_qualified (IssuerOfPatientID + PatientID, for several "
        "hospitals' MRNs); default patient_id",
    )
    p.add_argument(
        "--issuer-aliases",
        metavar="FILE",
        type=readable_file,
        help="with --patient-identity issuer_qualified: a CSV with the header issuer,domain mapping each "
        "spelling of an issuer (an empty one too) to one domain; kept in lake.json; default: none",
    )
    p.add_argument(
        "--on-update",
        choices=[u.value for u in OnUpdate],
        default=OnUpdate.REPLACE.value,
        help="what an ingest does with a file whose SOP Instance UID the lake holds with other content: replace "
        "(the newer version replaces the older, audited), keep-first (ignored, counted) or flag (kept in the "
        "vault for review, counted); default replace",
    )
    p.add_argument(
        "--keep-crosswalk",
        action="store_true",
        help="record original to pseudonym patient IDs in the vault beside the key (default: off)",
    )
    p.set_defaults(func=run)


def chosen_options(given: list[str] | None, only: bool) -> list[str]:
    """The lake's options: ``given`` added to the research defaults, or ``given`` alone with ``only``.

    Choosing one of the two longitudinal date options drops the other from the defaults (PS3.15
    allows one of them).
    """
    given = list(given or [])
    if only:
        return sorted(set(given))
    base = {o.value for o in DEFAULT_RESEARCH_OPTIONS}
    full = ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES.value
    modified = ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES.value
    if full in given and modified not in given:
        base.discard(modified)
    return sorted(base | set(given))


def run(args: argparse.Namespace) -> int:
    research = args.profile == ProfileName.RESEARCH.value
    lk = lake.init(
        args.lake,
        key_file=args.key_file,
        # pass-through: only what was given, which the profile refuses (lake.config.DeidSettings)
        options=chosen_options(args.options, args.only_options or not research),
        date_offset_days=tuple(args.date_offset_days),
        burned_in_policy=args.burned_in_policy,
        keep_crosswalk=args.keep_crosswalk,
        patient_identity=args.patient_identity,
        issuer_aliases=args.issuer_aliases,
        on_update=args.on_update,
        profile=args.profile,
    )
    deid = lk.config.deid
    print(f"created lake {lk.root}")
    print(f"key: {lk.key_path} (fingerprint {lk.config.key_fingerprint}); keep it safe and out of the lake")
    if research:
        print("profile: research")
        print(f"options: {', '.join(deid.options) or '(none: the Basic Profile alone)'}")
        low, high = deid.date_offset_days
        print(f"dates shifted back {low} to {high} days per patient; burned-in policy {deid.burned_in_policy}")
    else:
        print(
            "profile: pass-through (already de-identified data: UIDs, patient IDs and dates kept; files without "
            "the de-identification marks or with PHI patterns in text are rejected)"
        )
        print(f"burned-in policy {deid.burned_in_policy}")
    print(f"patient identity: {lk.config.identity.describe()}")
    print(f"updates (same SOP Instance UID, other content): {lk.config.corrections.on_update}")
    return 0
