"""Secrets the intake verifies with, read from Vault and cached briefly.

A short TTL (default 5 s) keeps verification off Vault's hot path while a rotation is still picked up
within seconds; a signature that fails against secrets read at least a second ago re-reads them once
(`refresh_stale`), so the first delivery Meta signs with a just-rotated secret is not refused, and a
flood of forged signatures costs at most one read of each secret a second. Concurrent misses for one
path share one read, and a missing secret is cached too (as None) so a flood of forged deliveries
cannot turn into a flood of Vault reads.

Each Meta app's secret has a rotation window: while the leaked-secret playbook keeps
`{"previous_version": n, "until": "<ISO-8601 UTC>"}` at the app's window path
(`waguard.playbook.accounts.rotation_window_path`), version n still verifies webhooks; after `until`
only the current version does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets as stdlib_secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, SecretStr, ValidationError

from waguard.errors import WaguardError
from waguard.intake.routing import CredentialMatch, Leaked
from waguard.settings import IntakeSettings, MetaSettings
from waguard.vault.errors import VaultError, VaultSecretNotFound
from waguard.vault.models import VersionedSecret

log = logging.getLogger(__name__)
DEFAULT_TTL_S = 5.0
REFRESH_AFTER_S = 1.0  # a failed signature re-reads current secrets at most this often


class SecretReader(Protocol):
    """What the intake needs from Vault (VaultClient has it)."""

    async def read_secret(self, path: str, *, key: str = "value",
                          version: int | None = None) -> VersionedSecret: ...


class SecretsUnavailable(WaguardError):
    """Vault could not be read, so nothing can be verified now (the service answers 503)."""


class RotationWindow(BaseModel):
    model_config = {"extra": "ignore"}

    previous_version: int
    until: datetime


class SecretCache:
    """Reads secrets through a short-lived cache."""

    def __init__(self, vault: SecretReader, clock: Callable[[], float], ttl_s: float = DEFAULT_TTL_S) -> None:
        self._vault = vault
        self._clock = clock
        self._ttl = ttl_s
        self._entries: dict[tuple[str, int | None], tuple[float, VersionedSecret | None]] = {}
        self._inflight: dict[tuple[str, int | None], asyncio.Future[VersionedSecret | None]] = {}
        # Keyed-hash comparisons use a key that exists only in this process.
        self._hash_key = stdlib_secrets.token_bytes(32)

    async def get(self, path: str, version: int | None = None) -> VersionedSecret | None:
        """The secret at `path` (a given version, or the current one); None when there is none.

        Raises:
            SecretsUnavailable: Vault could not be read (unreachable, permission denied, ...).
        """
        key = (path, version)
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[VersionedSecret | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            try:
                value: VersionedSecret | None = await self._vault.read_secret(path, version=version)
            except VaultSecretNotFound:
                value = None
            except VaultError as err:
                # The error names the path and operation only; it carries no value.
                raise SecretsUnavailable(f"cannot read {path!r} from Vault: {type(err).__name__}") from None
            self._entries[key] = (self._clock() + self._ttl, value)
            future.set_result(value)
            return value
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # mark retrieved: waiters (if any) get it, no "never retrieved" warning
            raise
        finally:
            self._inflight.pop(key, None)

    def refresh_stale(self, min_age_s: float = REFRESH_AFTER_S) -> bool:
        """Forget current values read at least `min_age_s` ago, so the next `get` reads Vault again;
        True if there was any. For a failed signature: the sender may already sign with a secret
        rotated after the read. Pinned versions (a rotation window's previous one) never change."""
        read_before = self._clock() - min_age_s
        stale = [key for key, (expires, _) in self._entries.items()
                 if key[1] is None and expires - self._ttl <= read_before]
        for key in stale:
            del self._entries[key]
        return bool(stale)

    async def values(self, path: str) -> list[SecretStr]:
        """The current value at `path` as a one-element list, or [] when there is none."""
        secret = await self.get(path)
        return [secret.value] if secret is not None else []

    async def app_secrets(self, meta: MetaSettings, intake: IntakeSettings) -> list[SecretStr]:
        """The settings' app's secrets that may sign Meta webhooks now (see `app_secrets_at`)."""
        return await self.app_secrets_at(meta.app_secret_path, intake.rotation_window_path)

    async def app_secrets_at(self, path: str, window_path: str) -> list[SecretStr]:
        """The secrets of one app (its secret at `path`) that may sign Meta webhooks now: current first,
        then the previous one while the rotation window at `window_path` is open."""
        current = await self.get(path)
        result = [current.value] if current is not None else []
        window = await self.rotation_window(window_path)
        if window is not None and (current is None or window.previous_version != current.version):
            previous = await self.get(path, window.previous_version)
            if previous is not None:
                result.append(previous.value)
        return result

    async def rotation_window(self, path: str) -> RotationWindow | None:
        """The open rotation window at `path`, or None (absent, malformed or expired)."""
        raw = await self.get(path)
        if raw is None:
            return None
        try:
            window = RotationWindow.model_validate(json.loads(raw.value.get_secret_value()))
        except (ValueError, ValidationError):
            log.warning("intake: the rotation window at %s is malformed; only the current app secret "
                        "verifies", path)
            return None
        if window.until.tzinfo is None or window.until.timestamp() <= self._clock():
            return None
        return window

    def _fingerprint(self, value: str) -> bytes:
        return hmac.new(self._hash_key, value.encode(), hashlib.sha256).digest()

    async def match_credential(self, leaked: str, candidates: Sequence[Candidate]) -> CredentialMatch | None:
        """Which managed Meta credential `leaked` is, compared by keyed hash; None if it is none of them.

        Every candidate's values are checked (no early exit); the value itself is never stored, logged
        or returned.
        """
        probe = self._fingerprint(leaked)
        found: CredentialMatch | None = None
        for c in candidates:
            for value in c.values:
                same = hmac.compare_digest(self._fingerprint(value.get_secret_value()), probe)
                if same and found is None:
                    found = CredentialMatch(c.leaked, c.path, c.waba_id)
        return found


@dataclass(frozen=True)
class Candidate:
    """A managed credential a leaked value may be: what kind, where in Vault, its values now, and the
    WABA a run about it acts on."""

    leaked: Leaked
    path: str
    values: list[SecretStr]
    waba_id: str | None = None
