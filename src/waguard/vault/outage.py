"""Game-day drills: make the local stack's Vault unavailable for a while, for real.

A sealed Vault answers 503 to everything but its seal status, which is what an outage looks like to
waguard (VaultUnavailable, a Retryable), so sealing the dev server is a faithful fault to inject.
The dev server keeps its in-memory data across a seal, and the stack keeps the unseal key
(`<home>/vault-unseal-key`, written by devserver's scrubber), so unsealing brings back every KV
secret and transit key. The token and the key are sent, never logged nor put in an error message.

    with vault_outage(addr, home / "vault-token", home / "vault-unseal-key", seconds=5):
        ...  # the drill carries on while Vault is down; after the block Vault is back
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from waguard.errors import ConfigError
from waguard.vault.errors import VaultError, VaultUnavailable

log = logging.getLogger(__name__)


def _request(method: str, addr: str, path: str, *, op: str, token: str | None = None,
             body: dict[str, Any] | None = None) -> httpx.Response:
    try:
        return httpx.request(method, f"{addr.rstrip('/')}/v1/{path}", json=body, timeout=5.0,
                             headers={"X-Vault-Token": token} if token else None)
    except httpx.HTTPError as exc:
        error = VaultUnavailable(f"vault at {addr} is unreachable during {op} ({type(exc).__name__})")
    raise error  # outside the except block: httpx's exception holds the request, token header and all


def _read(path: Path, what: str, missing: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        why = f"missing: {missing}" if isinstance(exc, FileNotFoundError) else f"unreadable ({exc.strerror})"
        raise ConfigError(f"{what} file {path} {why}") from None
    if not value:
        raise ConfigError(f"{what} file {path} is empty")
    return value


def sealed(addr: str) -> bool:
    """True when the Vault at `addr` is sealed (GET sys/seal-status, which needs no token)."""
    r = _request("GET", addr, "sys/seal-status", op="read seal status")
    if r.status_code != 200:
        raise VaultError(f"vault at {addr}: read seal status failed: HTTP {r.status_code}")
    return bool(r.json()["sealed"])


def seal(addr: str, root_token: str) -> None:
    """Seal the Vault at `addr` (PUT sys/seal); nothing happens when it is sealed already."""
    r = _request("PUT", addr, "sys/seal", op="seal", token=root_token)
    if r.status_code == 503 and sealed(addr):
        return
    if not r.is_success:
        hint = " (the token is not a root token)" if r.status_code == 403 else ""
        raise VaultError(f"vault at {addr} refused to seal: HTTP {r.status_code}{hint}")
    log.warning("vault at %s sealed for a drill", addr)


def unseal(addr: str, key: str, *, timeout_s: float = 10.0) -> None:
    """Unseal the Vault at `addr` (PUT sys/unseal) and wait until sys/seal-status says unsealed."""
    r = _request("PUT", addr, "sys/unseal", op="unseal", body={"key": key})
    if not r.is_success:
        raise VaultError(f"vault at {addr} refused to unseal: HTTP {r.status_code} (is the unseal key "
                         "file from this server's start?)")
    deadline = time.monotonic() + timeout_s
    while sealed(addr):
        if time.monotonic() > deadline:
            raise VaultUnavailable(f"vault at {addr} is still sealed {timeout_s:.0f}s after unseal")
        time.sleep(0.05)
    log.warning("vault at %s unsealed after a drill", addr)


class Unsealer(threading.Thread):
    """Unseals Vault after `seconds`, in the background. Not a daemon: Vault is unsealed even if the
    drill's main thread ends first."""

    def __init__(self, addr: str, key: str, seconds: float) -> None:
        super().__init__(name="vault-outage-unseal")
        self.addr, self.seconds, self._key = addr, seconds, key
        self._now = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        self._now.wait(self.seconds)
        try:
            unseal(self.addr, self._key)
        except Exception as exc:  # kept for finish(); our errors carry neither key nor token
            self.error = exc

    def finish(self, *, now: bool = False) -> None:
        """Wait until Vault is unsealed (at once with `now`); raise what unsealing raised, if anything."""
        if now:
            self._now.set()
        self.join()
        if self.error is not None:
            raise self.error


def unseal_after(addr: str, key: str, seconds: float) -> Unsealer:
    """Start a thread that unseals the Vault at `addr` after `seconds`; the caller carries on."""
    unsealer = Unsealer(addr, key, seconds)
    unsealer.start()
    return unsealer


@contextmanager
def vault_outage(addr: str, root_token_file: Path, unseal_key_file: Path,
                 seconds: float) -> Iterator[Unsealer]:
    """Seal the Vault at `addr` for `seconds` from entering the block, which runs meanwhile.

    Both files are read before sealing, so there is never a seal that cannot be undone. Leaving the
    block waits until Vault is unsealed again (at once if the block raised): after it, Vault is back.

    Raises:
        ConfigError: a file is missing or empty (nothing was sealed).
        VaultError: sealing or unsealing failed (VaultUnavailable: Vault was unreachable).
    """
    token = _read(root_token_file, "root token", "the stack writes it at start (settings.vault.token_file)")
    key = _read(unseal_key_file, "unseal key", "the stack was started before unseal keys were kept; "
                "restart it to keep one")
    seal(addr, token)
    unsealer = unseal_after(addr, key, seconds)
    try:
        yield unsealer
    except BaseException:
        unsealer.finish(now=True)
        raise
    unsealer.finish()
