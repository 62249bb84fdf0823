"""``lake listen --lake LAKE --port P [--aet T] [--bind ADDR] [--batch-size N] [--quiet-seconds S]``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from lake.cli.argtypes import non_negative_float, port_number, positive_int
from lake.cli.common import add_key_option, add_lake_option

if TYPE_CHECKING:
    from lake.sources.listener import ListenSummary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "listen", help="a storage SCP (C-STORE, C-ECHO) ingesting what a PACS or a modality sends, in batches"
    )
    add_lake_option(p)
    add_key_option(p)
    p.add_argument("--port", type=port_number, required=True, metavar="P", help="the DICOM port to listen on")
    p.add_argument(
        "--aet", "--ae-title", dest="ae_title", default="LAKE", metavar="T",
        help="the AE title senders must call (default LAKE)",
    )
    p.add_argument(
        "--bind", default="0.0.0.0", metavar="ADDR", help="the address to listen on (default 0.0.0.0: every interface)"
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=500, metavar="N", help="commit every N instances (default 500)"
    )
    p.add_argument(
        "--quiet-seconds",
        type=non_negative_float,
        default=10.0,
        metavar="S",
        help="commit what arrived after S seconds without a new instance, more than 0 (default 10)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=max(1, min(os.cpu_count() or 1, 8)),
        metavar="N",
        help="worker processes of each batch's ingest (default: the number of cores, at most 8)",
    )
    p.set_defaults(func=run)


def print_summary(s: ListenSummary) -> None:
    refused = ", ".join(f"{k} {v}" for k, v in sorted(s.refused.items())) or "none"
    print(
        f"received {s.received} instances in {s.associations} associations (refused: {refused}); "
        f"{s.batches} batches: seen {s.seen}, ingested {s.ingested}, duplicates {s.duplicates}, "
        f"updates {s.updates}, rejected {s.rejected} in {s.seconds:.1f} s"
    )


def run(args: argparse.Namespace) -> int:
    from lake.errors import ConfigError
    from lake.sources.listener import Listener

    if not args.quiet_seconds > 0:
        raise ConfigError("--quiet-seconds must be more than 0")
    say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))

    def batch_done(done: Any) -> None:
        say(
            f"lake listen: batch committed: seen {done.seen}, ingested {done.ingested}, "
            f"duplicates {done.duplicates}, rejected {done.rejected} (total ingested {listener.summary.ingested})"
        )

    listener = Listener(
        args.lake, args.port, ae_title=args.ae_title, bind=args.bind, key_file=args.key_file,
        batch_size=args.batch_size, quiet_seconds=args.quiet_seconds, on_batch=batch_done,
        ingest_options={"workers": args.workers},
    )  # fmt: skip
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        listener.start()
        say(f"lake listen: listening on port {args.port} as {listener.ae_title}; SIGTERM or Ctrl-C stops")
        summary = listener.serve(stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    listener.remove_empty_spool()
    print_summary(summary)
    return 0
