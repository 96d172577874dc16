"""What the Vault client returns, and the pure functions that build it from Vault's JSON.

Secret material only ever appears as `SecretStr`, whose repr is masked. None of these objects may be
returned from a Prefect task or passed as a flow parameter (Prefect stores both in plain text); flows
pass Vault paths and ask for values inside the task that needs them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from waguard.vault.errors import VaultError

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_SIGNATURE = re.compile(r"^vault:v(?P<version>[0-9]+):[A-Za-z0-9+/=]+$")


class VersionedSecret(BaseModel):
    """One version of one key of a KV v2 secret."""

    model_config = _FROZEN

    path: str
    version: int
    created_time: datetime
    value: SecretStr


class VersionInfo(BaseModel):
    """Metadata of one version of a KV v2 secret."""

    model_config = _FROZEN

    created_time: datetime
    deletion_time: datetime | None
    destroyed: bool

    @property
    def readable(self) -> bool:
        """False once the version is soft-deleted or destroyed."""
        return not self.destroyed and self.deletion_time is None


class SecretMetadata(BaseModel):
    """Metadata of a KV v2 secret: its versions and when they were written, never their values."""

    model_config = _FROZEN

    path: str
    current_version: int
    oldest_version: int
    created_time: datetime
    updated_time: datetime
    versions: dict[int, VersionInfo]


class TransitSignature(BaseModel):
    """A transit signature, `vault:v<key_version>:<base64>`, and the key version that made it."""

    model_config = _FROZEN

    signature: str
    key_version: int

    @property
    def raw(self) -> bytes:
        """The bare signature bytes (64 bytes for ed25519), for offline verification."""
        return base64.b64decode(self.signature.split(":", 2)[2])


class DataKey(BaseModel):
    """A fresh data key from transit: plaintext for use now, ciphertext to store beside the data."""

    model_config = _FROZEN

    plaintext: SecretStr  # base64 of the raw key bytes
    ciphertext: str  # vault:vN:..., only the transit key can open it
    key_version: int


def parse_time(value: str) -> datetime | None:
    """Parse a Vault timestamp (RFC 3339, nanoseconds, `Z`) to an aware UTC datetime; "" is None."""
    if not value:
        return None
    # Vault prints nanoseconds; fromisoformat keeps microseconds, which is all a datetime holds.
    return datetime.fromisoformat(value).astimezone(UTC)


def _required_time(value: str) -> datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError("Vault returned an empty timestamp where one is required")
    return parsed


def signature_key_version(signature: str) -> int:
    """The key version inside a `vault:vN:...` signature or ciphertext.

    Raises:
        ValueError: the string is not in Vault's format (the message does not repeat it).
    """
    m = _SIGNATURE.match(signature)
    if m is None:
        raise ValueError("not a Vault transit signature (expected 'vault:v<N>:<base64>')")
    return int(m.group("version"))


def versioned_secret_from(path: str, key: str, body: Mapping[str, Any]) -> VersionedSecret | None:
    """Build a VersionedSecret from the `data` of a KV v2 read; None when `key` is not in the secret.

    Raises:
        VaultError: the value at `key` is not a string (the message names the key, not the value).
    """
    values = body.get("data") or {}
    meta = body["metadata"]
    if key not in values:
        return None
    raw = values[key]
    if not isinstance(raw, str):
        raise VaultError(f"vault secret {path!r} key {key!r} holds a {type(raw).__name__}, "
                         "not a string")
    return VersionedSecret(path=path, version=int(meta["version"]),
                           created_time=_required_time(meta["created_time"]), value=SecretStr(raw))


def metadata_from(path: str, body: Mapping[str, Any]) -> SecretMetadata:
    """Build SecretMetadata from the `data` of a KV v2 metadata read."""
    versions = {
        int(number): VersionInfo(created_time=_required_time(v["created_time"]),
                                 deletion_time=parse_time(v.get("deletion_time") or ""),
                                 destroyed=bool(v.get("destroyed")))
        for number, v in (body.get("versions") or {}).items()
    }
    return SecretMetadata(
        path=path,
        current_version=int(body["current_version"]),
        # OpenBao reports 0 until versions are pruned by max_versions; 0 means "the first one".
        oldest_version=int(body.get("oldest_version") or 0),
        created_time=_required_time(body["created_time"]),
        updated_time=_required_time(body["updated_time"]),
        versions=versions,
    )


def public_keys_from(body: Mapping[str, Any]) -> dict[int, str]:
    """The base64 public keys by version from the `data` of a transit key read (asymmetric keys only)."""
    return {int(v): k["public_key"] for v, k in (body.get("keys") or {}).items()
            if isinstance(k, Mapping) and k.get("public_key")}


def string_values(body: Mapping[str, Any]) -> list[str]:
    """Every string value in the `data` of a KV v2 read (for redaction: all keys, not just `value`)."""
    return [v for v in (body.get("data") or {}).values() if isinstance(v, str) and v]
