"""Where a lake's parts live, and the lake's own settings (``lake.json``).

A lake folder holds only de-identified data::

    LAKE/lake.json             format, lake id, key fingerprint, de-identification options
    LAKE/tables/<name>/        Delta Lake tables (Parquet + _delta_log)
    LAKE/pixels/<series>/...   Zarr v3 arrays
    LAKE/reports/              de-identification reports (counts only)
    LAKE/.lock                 the write lock

The key and the vault (crosswalk, run logs with real source paths) live outside the lake: by
default in ``$LAKE_HOME/keys/<lake id>.key`` and ``$LAKE_HOME/keys/<lake id>.vault/``, where
``LAKE_HOME`` defaults to ``~/.config/lake``. With ``--key-file KEY`` the vault is ``KEY.vault/``
beside it.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lake.errors import ConfigError, LakeNotFoundError

FORMAT = "lake/1"
CONFIG_NAME = "lake.json"


def lake_home() -> Path:
    """Folder for keys and vaults: ``$LAKE_HOME`` or ``~/.config/lake``."""
    env = os.environ.get("LAKE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".config" / "lake"


def default_key_path(lake_id: str) -> Path:
    return lake_home() / "keys" / f"{lake_id}.key"


def vault_dir(key_path: Path) -> Path:
    """The vault sits beside the key: ``KEY.vault/``."""
    return key_path.with_name(key_path.name + ".vault")


@dataclass
class DeidSettings:
    """De-identification settings of a lake (recorded in ``lake.json``)."""

    options: list[str] = field(default_factory=list)
    date_offset_days: tuple[int, int] = (30, 1095)
    burned_in_policy: str = "mask-or-quarantine"
    keep_crosswalk: bool = False


@dataclass
class PixelSettings:
    codec: str = "auto"  # lake.pixels.codecs.PixelCodec; auto = chosen per array by measurement
    shard_frames: int = 64


@dataclass
class LakeConfig:
    lake_id: str
    key_fingerprint: str
    created: str
    deid: DeidSettings = field(default_factory=DeidSettings)
    pixels: PixelSettings = field(default_factory=PixelSettings)
    format: str = FORMAT

    @classmethod
    def new(cls, key_fingerprint: str, deid: DeidSettings | None = None) -> LakeConfig:
        return cls(
            lake_id=str(uuid.uuid4()),
            key_fingerprint=key_fingerprint,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            deid=deid or DeidSettings(),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LakeConfig:
        if data.get("format") != FORMAT:
            raise ConfigError(f"unsupported lake format {data.get('format')!r}; this lake package reads {FORMAT}")
        try:
            deid = DeidSettings(**data.get("deid", {}))
            deid.date_offset_days = tuple(deid.date_offset_days)  # type: ignore[assignment]
            pixels = PixelSettings(**data.get("pixels", {}))
            return cls(
                lake_id=data["lake_id"],
                key_fingerprint=data["key_fingerprint"],
                created=data["created"],
                deid=deid,
                pixels=pixels,
                format=data["format"],
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"lake.json is malformed: {exc}") from exc


class LakePaths:
    """Paths inside one lake folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    def table(self, name: str) -> Path:
        return self.tables / name

    @property
    def pixels(self) -> Path:
        return self.root / "pixels"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def exists(self) -> bool:
        return self.config.is_file()


def read_config(paths: LakePaths) -> LakeConfig:
    if not paths.exists():
        raise LakeNotFoundError(paths.root)
    try:
        data = json.loads(paths.config.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{paths.config} is not valid JSON: {exc}") from exc
    return LakeConfig.from_dict(data)


def write_config(paths: LakePaths, config: LakeConfig) -> None:
    """Atomically (re)write ``lake.json``."""
    tmp = paths.config.with_suffix(".json.tmp")
    tmp.write_text(config.to_json())
    os.replace(tmp, paths.config)
