"""Private elements kept under the Retain Safe Private option (``schemas/deid/private-safelist.toml``)."""

from __future__ import annotations

import tomllib
from functools import cache

from lake.deid.engine import PrivateRule
from lake.errors import ConfigError
from lake.resources import Traversable, schema_file

SAFELIST_PATH = schema_file("deid", "private-safelist.toml")  # package data (lake.resources)


@cache
def load_safelist(path: Traversable = SAFELIST_PATH) -> tuple[PrivateRule, ...]:
    """Rules ``(group, creator, element byte)``; each entry in the file documents what it is."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the private safelist {path}: {exc}") from exc
    rules = []
    for entry in doc.get("elements", []):
        try:
            group = int(entry["group"], 16)
            element = int(entry["element"], 16)
            creator = str(entry["creator"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{path}: malformed safelist entry {entry!r}") from exc
        if group % 2 == 0 or not 0 <= element <= 0xFF:
            raise ConfigError(f"{path}: entry {entry!r} is not a private element (odd group, element byte 00-FF)")
        rules.append(PrivateRule(group, creator, element))
    return tuple(rules)
