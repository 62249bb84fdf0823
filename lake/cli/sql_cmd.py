"""``lake sql --lake LAKE "SELECT ..." [--format table|csv|json]``."""

from __future__ import annotations

import argparse

import lake
from lake.cli.common import add_lake_option, print_frame
from lake.errors import LakeError


class QueryError(LakeError, ValueError):
    pass


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sql", help="run DuckDB SQL over the lake's tables and views")
    add_lake_option(p)
    p.add_argument("query", metavar="SQL")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import duckdb

    lk = lake.open(args.lake)
    try:
        df = lk.sql(args.query)
    except duckdb.Error as exc:
        raise QueryError(f"{exc}; tables and views: {', '.join(lk.tables())}") from exc
    print_frame(df, args.format)
    return 0
