"""``lake review list|show|release|mask|reject``: the review queue of quarantined and flagged pixels."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lake.cli.common import add_key_option, add_lake_option


def _common(p: argparse.ArgumentParser) -> None:
    add_lake_option(p)
    add_key_option(p)


def _decision(p: argparse.ArgumentParser) -> None:
    p.add_argument("uid", metavar="UID", help="the instance's SOPInstanceUID in the lake (from `lake review list`)")
    _common(p)
    p.add_argument("--reviewer", metavar="NAME", help="who decides, recorded in runs (default: the OS user)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="list, show and decide instances whose pixels were quarantined or flagged")
    actions = p.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    ls = actions.add_parser("list", help="instances under review, with the reasons")
    _common(ls)
    ls.set_defaults(func=run_list)
    show = actions.add_parser("show", help="write a windowed PNG preview of an instance outside the lake")
    show.add_argument("uid", metavar="UID", help="the instance's SOPInstanceUID in the lake")
    _common(show)
    show.add_argument(
        "--out", required=True, metavar="PNG", help="the PNG to write: outside every lake, the key's folder and vaults"
    )
    show.add_argument("--frame", type=int, default=0, metavar="N", help="the frame to show (default 0)")
    show.add_argument("--force", action="store_true", help="replace an existing PNG")
    show.set_defaults(func=run_show)
    for name, text in (
        ("release", "store a quarantined instance's held pixels unchanged (or accept a flagged instance)"),
        ("reject", "never store the pixels: delete the held copy and record the decision"),
    ):
        q = actions.add_parser(name, help=text)
        _decision(q)
        q.set_defaults(func=run_decision, action=name, box=None)
    m = actions.add_parser("mask", help="store a quarantined instance's held pixels with boxes set to 0")
    _decision(m)
    m.add_argument(
        "--box", nargs=4, type=int, action="append", required=True, metavar=("X0", "Y0", "X1", "Y1"),
        help="a box to mask in every frame, in pixels, ends exclusive (repeatable)",
    )  # fmt: skip
    m.set_defaults(func=run_decision, action="mask")


def run_list(args: argparse.Namespace) -> int:
    from lake.review import list_queue

    items = list_queue(args.lake, args.key_file)
    for item in items:
        held = "held" if item.held else "not held"
        reason = item.pixel_reason or "-"
        print(
            f"{item.sop_uid}  {item.kind}  {item.modality or '-'}  {reason}  verdict {item.phi_reason or '-'}  {held}"
        )
    print(f"{len(items)} instances under review", flush=True)
    return 0


def check_preview_path(out: Path, lake_root: str, key_path: Path, force: bool) -> Path:
    """Where a preview may go: as ``lake sql --out`` (outside every lake, ``$LAKE_HOME/keys`` and
    vaults), and also outside the folder of the lake's key."""
    from lake.cli.sql_cmd import OutputPathError, check_out_path

    target = check_out_path(out, Path(lake_root), force)
    key_folder = Path(os.path.realpath(key_path)).parent
    if key_folder in target.parents:
        raise OutputPathError(f"--out {out} is inside {key_folder}, the folder of the lake's key: write it elsewhere")
    return target


def run_show(args: argparse.Namespace) -> int:
    import tempfile

    from lake.core import Lake
    from lake.pixels.render import png
    from lake.review import preview

    lk = Lake(args.lake, args.key_file)
    target = check_preview_path(Path(args.out), args.lake, lk.key_path, args.force)
    image = preview(args.lake, args.uid, args.frame, args.key_file)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(png(image))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"wrote {target} ({image.shape[1]} x {image.shape[0]}): original pixels, delete it after review")
    return 0


DONE = {"release": "released", "mask": "masked", "reject": "rejected"}


def run_decision(args: argparse.Namespace) -> int:
    from lake.review import review

    boxes = [tuple(b) for b in (args.box or [])]
    out = review(args.lake, args.uid, args.action, boxes, reviewer=args.reviewer, key_file=args.key_file)
    if out.status == "already":
        print(f"instance {out.sop_uid}: already {DONE[args.action]} by an earlier review; nothing to do")
    else:
        extra = f" with {out.boxes} boxes masked" if out.boxes else ""
        done = "completed an interrupted " if out.status == "completed" else ""
        print(f"{done}{args.action} of {out.sop_uid}{extra}: pixel_status {out.pixel_status}; run {out.run_id}")
    return 0
