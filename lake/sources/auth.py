"""Credentials of a PACS source, read from a file or the environment, never from the command line.

- a file (``--auth-file FILE`` or ``LAKE_DICOMWEB_AUTH_FILE``), readable by its owner only, holding
  one line in the form of an HTTP ``Authorization`` value: ``Bearer TOKEN`` or ``Basic USER:PASSWORD``;
- else ``LAKE_DICOMWEB_TOKEN`` (a bearer token), or ``LAKE_DICOMWEB_USER`` and
  ``LAKE_DICOMWEB_PASSWORD`` (basic authentication);
- else none.

Secrets never appear in a message, a log or the vault.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lake.errors import ConfigError

AUTH_FILE_ENV = "LAKE_DICOMWEB_AUTH_FILE"
TOKEN_ENV = "LAKE_DICOMWEB_TOKEN"
USER_ENV = "LAKE_DICOMWEB_USER"
PASSWORD_ENV = "LAKE_DICOMWEB_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    """A bearer token or a user and password (``repr`` shows neither)."""

    token: str | None = field(default=None, repr=False)
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return "bearer" if self.token else "basic" if self.user is not None else "none"


def _from_file(path: Path) -> Credentials:
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the credentials file {path}: {type(exc).__name__}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the credentials file {path} is readable by others: `chmod 600 {path}`")
    scheme, _, value = text.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return Credentials(token=value)
    if scheme.lower() == "basic" and ":" in value:
        user, _, password = value.partition(":")
        return Credentials(user=user, password=password)
    raise ConfigError(f"the credentials file {path}: expected one line `Bearer TOKEN` or `Basic USER:PASSWORD`")


def load_credentials(auth_file: str | os.PathLike[str] | None, environ: Mapping[str, str] = os.environ) -> Credentials:
    """The credentials of a pull: ``auth_file``, else the environment (see the module). Raises
    :class:`ConfigError` for an unreadable or malformed file, or one that others can read."""
    path = auth_file or environ.get(AUTH_FILE_ENV)
    if path:
        return _from_file(Path(path))
    if environ.get(TOKEN_ENV):
        return Credentials(token=environ[TOKEN_ENV])
    if environ.get(USER_ENV) is not None:
        if environ.get(PASSWORD_ENV) is None:
            raise ConfigError(f"{USER_ENV} is set without {PASSWORD_ENV}: set both for basic authentication")
        return Credentials(user=environ[USER_ENV], password=environ[PASSWORD_ENV])
    return Credentials()
