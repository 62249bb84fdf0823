"""Where a lake's parts live, and the lake's own settings (``lake.json``).

A lake folder holds only de-identified data::

    LAKE/lake.json             format, lake id, key fingerprint, de-identification profile and options, patient identity
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
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lake.errors import ConfigError, FolderLakeOnlyError, LakeNotFoundError, LakePathError

if TYPE_CHECKING:
    from lake.storage import Storage

FORMAT = "lake/1"
CONFIG_NAME = "lake.json"

#: Default range of the per-patient backwards date shift, in days.
DEFAULT_DATE_OFFSET_DAYS = (30, 1095)
#: Largest shift a lake accepts: ten years keeps every shifted date a valid DICOM date and an
#: interval a researcher can still read as "about when".
MAX_DATE_OFFSET_DAYS = 3650
MAX_SHARD_FRAMES = 4096


def lake_home() -> Path:
    """Folder for keys and vaults: ``$LAKE_HOME`` or ``~/.config/lake``."""
    env = os.environ.get("LAKE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".config" / "lake"


def default_key_path(lake_id: str) -> Path:
    return lake_home() / "keys" / f"{lake_id}.key"


def vault_dir(key_path: Path) -> Path:
    """The vault sits beside the key: ``KEY.vault/``."""
    return key_path.with_name(key_path.name + ".vault")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class DeidSettings:
    """De-identification settings of a lake (recorded in ``lake.json``).

    :meth:`check` (ranges and types, no imports) runs whenever ``lake.json`` is read;
    :meth:`validate` also checks the names against the profile and the burned-in policies, and
    runs at ``init`` and before an ingest. Both raise :class:`ConfigError` naming the field.
    """

    options: list[str] = field(default_factory=list)
    date_offset_days: tuple[int, int] = DEFAULT_DATE_OFFSET_DAYS
    burned_in_policy: str = "mask-or-quarantine"
    keep_crosswalk: bool = False
    #: the named profile (``lake.deid.profile.ProfileName``): ``research`` or ``pass-through``; fixed
    #: at ``init`` (a lake.json without it was written before it existed: research)
    profile: str = "research"

    def check(self) -> None:
        offsets = self.date_offset_days
        if not (
            isinstance(offsets, list | tuple)
            and len(offsets) == 2
            and all(_is_int(x) for x in offsets)
            and 0 < offsets[0] <= offsets[1] <= MAX_DATE_OFFSET_DAYS
        ):
            shown = " ".join(map(str, offsets)) if isinstance(offsets, list | tuple) else repr(offsets)
            low, high = DEFAULT_DATE_OFFSET_DAYS
            raise ConfigError(
                f"date offset range {shown} is invalid: the per-patient shift needs two whole numbers of days "
                f"MIN MAX with 0 < MIN <= MAX <= {MAX_DATE_OFFSET_DAYS} (--date-offset-days MIN MAX at "
                f"`lake init`, deid.date_offset_days in lake.json), e.g. {low} {high}"
            )
        if not isinstance(self.options, list | tuple) or not all(isinstance(o, str) for o in self.options):
            raise ConfigError(f"deid.options must be a list of option names, got {self.options!r}")
        if not isinstance(self.burned_in_policy, str):
            raise ConfigError(f"deid.burned_in_policy must be a policy name, got {self.burned_in_policy!r}")
        if not isinstance(self.keep_crosswalk, bool):
            raise ConfigError(f"deid.keep_crosswalk must be true or false, got {self.keep_crosswalk!r}")
        if not isinstance(self.profile, str):
            raise ConfigError(f"deid.profile must be a profile name, got {self.profile!r}")

    def validate(self) -> None:
        self.check()
        from lake.deid.policy import PixelPolicy
        from lake.deid.profile import ProfileName, parse_options, parse_profile_name

        parse_options(self.options)  # names the valid options on a typo
        if parse_profile_name(self.profile) is ProfileName.PASS_THROUGH and self.options:
            raise ConfigError(
                f"the pass-through profile keeps already de-identified values as they are, so the PS3.15 options "
                f"({', '.join(self.options)}) do not apply: leave out --option (deid.options must be empty in "
                "lake.json), or make a research lake without --profile pass-through"
            )
        if self.burned_in_policy not in {p.value for p in PixelPolicy}:
            valid = ", ".join(p.value for p in PixelPolicy)
            raise ConfigError(
                f"unknown burned-in policy {self.burned_in_policy!r} (--burned-in-policy, deid.burned_in_policy "
                f"in lake.json); valid: {valid}"
            )


@dataclass
class IdentitySettings:
    """What identifies a patient (``lake.json`` section ``identity``; see :mod:`lake.deid.identity`).

    ``patient_identity`` is ``patient_id`` (PatientID alone, the default) or ``issuer_qualified``
    (IssuerOfPatientID and PatientID, issuers mapped through ``issuer_aliases``: folded spelling to
    domain). Chosen at ``init`` and never changed: a change would re-key the lake. A lake.json
    without this section (written before it existed) reads as ``issuer_qualified`` without aliases
    and with ``legacy_study_keys``: how those lakes' pseudonyms were keyed, studies without a
    Patient ID included (``lake.deid.identity.PatientIdentifier``).
    """

    patient_identity: str = "patient_id"
    issuer_aliases: dict[str, str] = field(default_factory=dict)
    legacy_study_keys: bool = False

    def check(self) -> None:
        from lake.deid.identity import PatientIdentity

        valid = ", ".join(p.value for p in PatientIdentity)
        identity = self.patient_identity
        if not isinstance(identity, str) or identity not in {p.value for p in PatientIdentity}:
            raise ConfigError(
                f"unknown patient identity {self.patient_identity!r} (--patient-identity at `lake init`, "
                f"identity.patient_identity in lake.json); valid: {valid}"
            )
        aliases = self.issuer_aliases
        if not isinstance(aliases, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in aliases.items()
        ):
            raise ConfigError("identity.issuer_aliases must map issuer spellings to non-empty domain names")
        if not isinstance(self.legacy_study_keys, bool):
            raise ConfigError(f"identity.legacy_study_keys must be true or false, got {self.legacy_study_keys!r}")
        if aliases and self.patient_identity != PatientIdentity.ISSUER_QUALIFIED.value:
            raise ConfigError(
                "issuer aliases need an issuer-qualified lake (--patient-identity issuer_qualified): a "
                f"{self.patient_identity} lake ignores IssuerOfPatientID"
            )

    def validate(self) -> None:
        self.check()

    def describe(self) -> str:
        """One line for ``lake info`` (issuer names only, no patient data)."""
        if self.patient_identity != "issuer_qualified":
            return f"{self.patient_identity} (PatientID alone; issuers ignored)"
        if not self.issuer_aliases:
            return "issuer_qualified (IssuerOfPatientID + PatientID; no issuer aliases)"
        domains = len(set(self.issuer_aliases.values()))
        spellings = len(self.issuer_aliases)
        return f"issuer_qualified (IssuerOfPatientID + PatientID; {spellings} issuer spellings in {domains} domain(s))"


@dataclass
class PixelSettings:
    codec: str = "auto"  # lake.pixels.codecs.PixelCodec; auto = chosen per array by measurement
    shard_frames: int = 64

    def check(self) -> None:
        if not _is_int(self.shard_frames) or not 0 < self.shard_frames <= MAX_SHARD_FRAMES:
            raise ConfigError(
                f"pixels.shard_frames {self.shard_frames!r} is invalid: frames per shard file must be a whole "
                f"number from 1 to {MAX_SHARD_FRAMES} (default 64)"
            )
        if not isinstance(self.codec, str):
            raise ConfigError(f"pixels.codec must be a codec name, got {self.codec!r}")

    def validate(self) -> None:
        self.check()
        from lake.pixels.codecs import PixelCodec

        if self.codec not in {c.value for c in PixelCodec}:
            valid = ", ".join(c.value for c in PixelCodec)
            raise ConfigError(f"unknown pixels.codec {self.codec!r}; valid: {valid} (default auto)")


@dataclass
class BulkSettings:
    """Caps on the large binary header values kept in the ``bulk`` table (:mod:`lake.headers.bulk`).

    A value longer than ``max_value_bytes``, or one that would take an instance's bulk values past
    ``max_instance_bytes``, is omitted (``BulkDataURI`` ``lake:bulkdata-omitted``) and counted.
    """

    max_value_bytes: int = 16 * 1024**2
    max_instance_bytes: int = 64 * 1024**2

    def check(self) -> None:
        for name in ("max_value_bytes", "max_instance_bytes"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ConfigError(
                    f"bulk.{name} {value!r} is invalid: it must be a whole number of bytes, 0 or more "
                    "(0 keeps no bulk value; defaults 16 MiB per value, 64 MiB per instance)"
                )

    def validate(self) -> None:
        self.check()


class OnUpdate(StrEnum):
    """What an ingest does with a file whose SOP Instance UID the lake holds with other content."""

    REPLACE = "replace"  # the newer version replaces the older (rows and pixels), audited
    KEEP_FIRST = "keep-first"  # ignored, counted
    FLAG = "flag"  # kept apart in the vault for review, counted


@dataclass
class CorrectionSettings:
    """How corrections from the archive are applied (``lake.json`` section ``corrections``; issue 16).

    ``on_update`` (:class:`OnUpdate`) is chosen at ``init`` (``--on-update``); a lake written before
    the setting existed reads as ``replace``."""

    on_update: str = OnUpdate.REPLACE.value

    def check(self) -> None:
        if self.on_update not in {u.value for u in OnUpdate}:
            valid = ", ".join(u.value for u in OnUpdate)
            raise ConfigError(
                f"unknown update policy {self.on_update!r} (--on-update at `lake init`, corrections.on_update in "
                f"lake.json); valid: {valid} (default replace)"
            )

    def validate(self) -> None:
        self.check()


@dataclass
class LakeConfig:
    lake_id: str
    key_fingerprint: str
    created: str
    deid: DeidSettings = field(default_factory=DeidSettings)
    pixels: PixelSettings = field(default_factory=PixelSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    bulk: BulkSettings = field(default_factory=BulkSettings)
    corrections: CorrectionSettings = field(default_factory=CorrectionSettings)
    format: str = FORMAT

    @classmethod
    def new(
        cls, key_fingerprint: str, deid: DeidSettings | None = None, identity: IdentitySettings | None = None
    ) -> LakeConfig:
        return cls(
            lake_id=str(uuid.uuid4()),
            key_fingerprint=key_fingerprint,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            deid=deid or DeidSettings(),
            identity=identity or IdentitySettings(),
        )

    def validate(self) -> None:
        """Check every setting, names included (imports the profile and codecs: used by init and ingest)."""
        self.deid.validate()
        self.pixels.validate()
        self.identity.validate()
        self.bulk.validate()
        self.corrections.validate()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LakeConfig:
        if data.get("format") != FORMAT:
            raise ConfigError(f"unsupported lake format {data.get('format')!r}; this lake package reads {FORMAT}")
        Section = DeidSettings | PixelSettings | IdentitySettings | BulkSettings | CorrectionSettings
        sections: tuple[tuple[str, type[Section]], ...] = (
            ("deid", DeidSettings),
            ("pixels", PixelSettings),
            ("identity", IdentitySettings),
            ("bulk", BulkSettings),
            ("corrections", CorrectionSettings),
        )
        for section, known in sections:
            value = data.get(section, {})
            if not isinstance(value, dict):
                raise ConfigError(f"{section} must be an object, got {value!r}")
            unknown = sorted(set(value) - set(known.__dataclass_fields__))
            if unknown:
                fields = ", ".join(known.__dataclass_fields__)
                raise ConfigError(f"unknown field(s) {', '.join(unknown)} in {section}; known: {fields}")
        try:
            deid = DeidSettings(**data.get("deid", {}))
            if isinstance(deid.date_offset_days, list):
                deid.date_offset_days = tuple(deid.date_offset_days)
            pixels = PixelSettings(**data.get("pixels", {}))
            # written before the setting existed: those lakes keyed patients on (issuer, PatientID)
            legacy = {"patient_identity": "issuer_qualified", "legacy_study_keys": True}
            identity = IdentitySettings(**data.get("identity", legacy))
            config = cls(
                lake_id=data["lake_id"],
                key_fingerprint=data["key_fingerprint"],
                created=data["created"],
                deid=deid,
                pixels=pixels,
                identity=identity,
                bulk=BulkSettings(**data.get("bulk", {})),
                corrections=CorrectionSettings(**data.get("corrections", {})),
                format=data["format"],
            )
        except KeyError as exc:
            raise ConfigError(f"the field {exc} is missing") from exc
        config.deid.check()
        config.pixels.check()
        config.identity.check()
        config.bulk.check()
        config.corrections.check()
        return config


class LakePaths:
    """Where the parts of one lake are: a folder (``Path`` properties, as always) or an object store URL
    (``s3://bucket/prefix``: :attr:`storage` and lake-relative keys; the ``Path`` properties raise
    :class:`~lake.errors.FolderLakeOnlyError`, so code that needs a folder refuses clearly)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        from lake.storage.options import is_object_url

        text = os.fspath(root)
        self._root: Path | None = None if is_object_url(text) else Path(root)
        self._storage: Storage | None = None
        if self._root is None:
            from lake.storage import open_storage

            self._storage = open_storage(text)
        #: the lake's location as the user may read it: the folder, or ``s3://bucket/prefix``
        self.location = str(self._root) if self._root is not None else self.storage.url

    @property
    def is_local(self) -> bool:
        return self._root is not None

    @property
    def storage(self) -> Storage:
        """The lake's files behind :class:`lake.storage.Storage` (a folder's :class:`LocalStorage` too)."""
        if self._storage is None:
            from lake.storage import LocalStorage

            self._storage = LocalStorage(self.root)
        return self._storage

    @property
    def root(self) -> Path:
        if self._root is None:
            raise FolderLakeOnlyError("this operation", self.location)
        return self._root

    def require_folder(self, what: str) -> Path:
        """The folder of the lake; :class:`FolderLakeOnlyError` naming ``what`` for an object store lake."""
        if self._root is None:
            raise FolderLakeOnlyError(what, self.location)
        return self._root

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def config_location(self) -> str:
        """Where ``lake.json`` is, for messages."""
        return str(self.config) if self.is_local else f"{self.location}/{CONFIG_NAME}"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    def table(self, name: str) -> Path:
        return self.tables / name

    def table_key(self, name: str) -> str:
        """The table's folder as a lake-relative storage path."""
        return f"tables/{name}"

    def table_uri(self, name: str) -> str:
        """The table as deltalake and polars address it (with :meth:`storage_options`)."""
        return str(self.table(name)) if self.is_local else self.storage.uri(self.table_key(name))

    def storage_options(self) -> dict[str, str] | None:
        """deltalake's ``storage_options`` for the tables (None for a folder)."""
        return None if self.is_local else self.storage.storage_options()

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
        if self._root is None:
            return self.storage.exists(CONFIG_NAME)
        return self.config.is_file()


def check_lake_folder(root: Path) -> None:
    """Raise :class:`LakePathError` when ``root``, or the nearest of its parents that exists, is not
    a folder (so no lake folder can be there)."""
    path = Path(os.path.abspath(root))
    while not (path.exists() or path.is_symlink()) and path.parent != path:
        path = path.parent
    if path.is_dir():
        return
    if path == Path(os.path.abspath(root)):
        raise LakePathError(f"the lake path {root} is a file, not a folder: give the path of a lake folder")
    raise LakePathError(f"the lake path {root} lies under {path}, which is a file: give the path of a lake folder")


def read_config(paths: LakePaths, validate: bool = False) -> LakeConfig:
    """Read and check ``lake.json`` (ranges and types; with ``validate`` also the option, policy and
    codec names, which imports the profile). Raises :class:`ConfigError` naming the field and the fix."""
    if not paths.exists():
        if paths.is_local:
            check_lake_folder(paths.root)
        raise LakeNotFoundError(paths.location)
    where = paths.config_location
    try:
        data = json.loads(paths.config.read_text() if paths.is_local else paths.storage.read(CONFIG_NAME))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{where} is malformed: it must hold a JSON object")
    if data.get("format") != FORMAT:
        return LakeConfig.from_dict(data)  # its message names the format
    try:
        config = LakeConfig.from_dict(data)
        if validate:
            config.validate()
    except ConfigError as exc:
        raise ConfigError(
            f"{where} is invalid: {exc}. Restore the value the lake was created with "
            f"(every ingest's report {paths.location}/reports/deid-RUN.json records the settings)"
        ) from exc
    return config


def write_config(paths: LakePaths, config: LakeConfig) -> None:
    """Atomically (re)write ``lake.json``."""
    if not paths.is_local:
        paths.storage.write(CONFIG_NAME, config.to_json().encode())
        return
    tmp = paths.config.with_suffix(".json.tmp")
    tmp.write_text(config.to_json())
    os.replace(tmp, paths.config)
