"""The lake's secret key and everything derived from it.

The key is 32 random bytes stored hex-encoded in a file *outside* the lake (mode 0600). All
pseudonyms, UIDs, date offsets and source references are HMAC-SHA256 of a domain-separated message
with this key, so they are deterministic across runs and workers, and unlinkable without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from lake.errors import KeyFileError

KEY_BYTES = 32
_UID_ROOT = "2.25."


@dataclass(frozen=True)
class LakeKey:
    """A 256-bit secret. Never printed, never written into a lake."""

    secret: bytes

    def __repr__(self) -> str:  # keep the secret out of tracebacks and logs
        return f"LakeKey(fingerprint={self.fingerprint})"

    @property
    def fingerprint(self) -> str:
        """A public identifier of the key: SHA-256 of a domain-separated digest, 16 hex digits."""
        return hashlib.sha256(b"lake-key-fingerprint\x00" + self.secret).hexdigest()[:16]

    def digest(self, domain: str, *parts: str | bytes) -> bytes:
        """HMAC-SHA256 over ``domain`` and ``parts``, unambiguously separated."""
        mac = hmac.new(self.secret, digestmod=hashlib.sha256)
        mac.update(domain.encode() + b"\x00")
        for part in parts:
            data = part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part
            mac.update(len(data).to_bytes(8, "big") + data)
        return mac.digest()

    def pseudonym(self, issuer: str, patient_id: str) -> str:
        """Keyed patient pseudonym, e.g. ``P-3F9A1C0B7E2D4A61`` (64 bits: collision-safe for 10^8 patients)."""
        return "P-" + self.digest("patient-id", issuer, patient_id)[:8].hex().upper()

    def uid(self, original: str) -> str:
        """Keyed ``2.25.`` UID for an original UID (PS3.5 B.2: UUID-derived decimal, <= 64 chars)."""
        value = int.from_bytes(self.digest("uid", original.strip())[:16], "big")
        # Set the UUID version 8 / variant bits so the integer is a valid RFC 9562 UUID.
        value = (value & ~(0xF << 76)) | (0x8 << 76)
        value = (value & ~(0x3 << 62)) | (0x2 << 62)
        return _UID_ROOT + str(value)

    def study_pseudonym(self, study_uid: str) -> str:
        """Pseudonym of a study without a Patient ID (its own patient), keyed on its original UID in a
        digest domain of its own: no Patient ID and issuer can produce it."""
        return "P-" + self.digest("patient-study", study_uid.strip())[:8].hex().upper()

    def day_offset(self, patient_key: str, low: int, high: int) -> int:
        """Keyed per-patient shift in whole days, in ``[-high, -low]`` (never zero; dates move back)."""
        return self._offset("day-offset", patient_key, low, high)

    def study_day_offset(self, study_uid: str, low: int, high: int) -> int:
        """:meth:`day_offset` of a study without a Patient ID (a digest domain of its own)."""
        return self._offset("day-offset-study", study_uid.strip(), low, high)

    def _offset(self, domain: str, value: str, low: int, high: int) -> int:
        if not 0 < low <= high:
            raise ValueError(f"date offset range must satisfy 0 < low <= high, got {low}..{high}")
        span = high - low + 1
        n = int.from_bytes(self.digest(domain, value)[:8], "big")
        return -(low + n % span)

    def identity_digest(self, what: str, *parts: str) -> str:
        """Keyed digest of identity facts (a patient ID, a birth date) for the vault's identity ledger:
        128 bits, hex; equal values give equal digests, and nothing is readable without the key."""
        return self.digest("identity-" + what, *parts)[:16].hex()

    def source_ref(self, content_sha256: bytes) -> str:
        """Keyed reference to an input file's content; lets re-ingests be recognised without storing paths."""
        return self.digest("source", content_sha256)[:16].hex()


def generate_key() -> LakeKey:
    return LakeKey(secrets.token_bytes(KEY_BYTES))


def write_key(key: LakeKey, path: Path) -> None:
    """Write ``key`` to ``path`` with mode 0600, refusing to overwrite an existing key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite a key") from exc
    with os.fdopen(fd, "w") as f:
        f.write(key.secret.hex() + "\n")
    os.chmod(path, 0o600)


def read_key(path: Path) -> LakeKey:
    """Read a key file; it must be 64 hex digits and not readable by group or others."""
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except FileNotFoundError as exc:
        raise KeyFileError(
            f"key file {path} not found: pass --key-file, or set LAKE_HOME to where the lake's key is kept"
        ) from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"key file {path} is accessible by other users; run `chmod 600 {path}`")
    try:
        secret = bytes.fromhex(text)
    except ValueError as exc:
        raise KeyFileError(f"key file {path} is not {KEY_BYTES * 2} hex digits") from exc
    if len(secret) != KEY_BYTES:
        raise KeyFileError(f"key file {path} is not {KEY_BYTES * 2} hex digits")
    return LakeKey(secret)
