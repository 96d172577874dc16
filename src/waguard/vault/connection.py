"""`VaultConnection`: how waguard reaches Vault: construction, login, and the worker-thread boundary.

`VaultClient` (client.py) adds the KV v2 and transit operations on top. hvac is synchronous
(requests), so every call runs in a worker thread (`asyncio.to_thread`) and the event loop keeps
serving other coroutines meanwhile. Errors are translated inside that worker (`errors.guarded`), so
what crosses back is a waguard VaultError that carries no response text.

Construction does no I/O; `await client.check()` logs in (AppRole) and proves the credential works,
so a misconfiguration shows up at start-up as a ConfigError naming the setting to fix.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Self, TypeVar

import hvac
import hvac.exceptions

from waguard.errors import ConfigError
from waguard.settings import VaultSettings
from waguard.vault.errors import VaultPermissionDenied, guarded

log = logging.getLogger(__name__)
T = TypeVar("T")
_LOGIN_REJECTED = (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden,
                   hvac.exceptions.Unauthorized, hvac.exceptions.InvalidPath)


def read_credential_file(path: Path, setting: str) -> str:
    """Read a token or secret-id file, stripped.

    Raises:
        ConfigError: the file is missing, unreadable or empty; the message names `setting` and the path.
    """
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path} ({exc.strerror or type(exc).__name__})") from None
    if not value:
        raise ConfigError(f"{setting}: {path} is empty")
    return value


@dataclass(frozen=True)
class AppRoleLogin:
    """How to log in with AppRole. The secret id is read from its file at each login, never kept."""

    role_id: str
    secret_id_file: Path
    mount: str = "approle"


class VaultConnection:
    """A logged-in (or ready to log in) hvac client, and `_call`, which runs blocking work off the loop."""

    def __init__(self, client: hvac.Client, *, kv_mount: str = "secret", transit_mount: str = "transit",
                 approle: AppRoleLogin | None = None, credential: str = "the Vault token") -> None:
        """Wrap an hvac client (tests and tools); `credential` names the setting errors should point at."""
        self._client = client
        self.kv_mount = kv_mount
        self.transit_mount = transit_mount
        self._approle = approle
        self._credential = credential
        self._login_lock = threading.Lock()

    @classmethod
    def from_settings(cls, vault: VaultSettings) -> Self:
        """Build a client from settings: a token (vault.token or vault.token_file) or an AppRole login.

        Raises:
            ConfigError: the token file is missing or empty.
        """
        common: dict[str, Any] = {"kv_mount": vault.kv_mount, "transit_mount": vault.transit_mount}
        if vault.auth_method == "approle":
            assert vault.role_id is not None and vault.secret_id_file is not None  # the settings validator
            # token="" stops hvac from falling back to VAULT_TOKEN or ~/.vault-token before the login.
            # types-hvac says int; hvac hands the timeout to requests, which takes seconds as a float.
            client = hvac.Client(url=vault.addr, token="", timeout=vault.timeout_s)  # type: ignore[arg-type]
            login = AppRoleLogin(vault.role_id, vault.secret_id_file, vault.approle_mount)
            credential = ("the AppRole login (vault.role_id, vault.secret_id_file, vault.approle_mount: "
                          "WAGUARD_VAULT__ROLE_ID, WAGUARD_VAULT__SECRET_ID_FILE, "
                          "WAGUARD_VAULT__APPROLE_MOUNT)")
            return cls(client, approle=login, credential=credential, **common)
        if vault.token is not None:
            token = vault.token.get_secret_value()
            credential = "the token in vault.token (WAGUARD_VAULT__TOKEN)"
        else:
            assert vault.token_file is not None  # the settings validator
            setting = "vault.token_file (WAGUARD_VAULT__TOKEN_FILE)"
            token = read_credential_file(vault.token_file, setting)
            credential = f"the token in {vault.token_file}, from {setting}"
        return cls(hvac.Client(url=vault.addr, token=token, timeout=vault.timeout_s),  # type: ignore[arg-type]  # float: as above
                   credential=credential, **common)

    @property
    def addr(self) -> str:
        """The Vault address this client talks to."""
        return str(self._client.url)

    @property
    def hvac_client(self) -> hvac.Client:
        """The underlying (blocking) hvac client, for admin helpers such as `devserver.bootstrap`."""
        return self._client

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(addr={self.addr!r}, kv_mount={self.kv_mount!r}, "
                f"transit_mount={self.transit_mount!r})")

    def close(self) -> None:
        """Close the HTTP session; the login token (if any) is dropped with it."""
        self._client.adapter.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def check(self) -> None:
        """Log in if needed and prove the credential works (`auth/token/lookup-self`).

        Raises:
            ConfigError: Vault rejects the credential; the message names the setting to fix.
            VaultUnavailable: Vault is unreachable, sealed or failing.
        """
        try:
            await self._call("token lookup", lambda: self._client.auth.token.lookup_self())
            return
        except VaultPermissionDenied:
            error = ConfigError(f"vault at {self.addr} rejected {self._credential}: the token is wrong, "
                                "expired or revoked")
        raise error

    # -- plumbing -------------------------------------------------------------------------------

    def _login(self) -> None:
        assert self._approle is not None
        login = self._approle
        secret_id = read_credential_file(login.secret_id_file,
                                         "vault.secret_id_file (WAGUARD_VAULT__SECRET_ID_FILE)")
        self._client.token = ""  # never present an expired token alongside the login
        try:
            # use_token=True keeps the new token on the hvac adapter: in memory, never on disk.
            self._client.auth.approle.login(role_id=login.role_id, secret_id=secret_id,
                                            mount_point=login.mount, use_token=True)
            return
        except _LOGIN_REJECTED:
            error = ConfigError(
                f"vault at {self.addr} rejected {self._credential} at auth/{login.mount}/login")
        raise error

    def _invoke(self, fn: Callable[[], T]) -> T:
        """Run one blocking operation in the worker thread, logging in with AppRole first if needed."""
        if self._approle is None:
            return fn()
        fresh = False
        with self._login_lock:
            if not self._client.token:
                self._login()
                fresh = True
        try:
            return fn()
        except hvac.exceptions.Forbidden:
            if fresh:
                raise  # a brand-new token was refused: a policy gap, not an expiry
        # An AppRole token expires (token_ttl) and an approval pause can outlive it: log in again, once.
        with self._login_lock:
            self._login()
        return fn()

    async def _call(self, op: str, fn: Callable[[], T], *, path: str | None = None,
                    version: int | None = None, key: str | None = None) -> T:
        log.debug("vault %s path=%s version=%s key=%s", op, path, version, key)
        return await asyncio.to_thread(guarded, partial(self._invoke, fn), op=op, addr=self.addr,
                                       path=path, version=version, key=key)
