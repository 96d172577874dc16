"""Vault errors, and the one place where hvac's and requests' exceptions are translated into them.

    WaguardError
    └── VaultError
        ├── VaultUnavailable (+ Retryable)   connection refused, timeout, 429, 5xx, sealed
        ├── VaultPermissionDenied            401/403: the token lacks a capability, or expired
        ├── VaultSecretNotFound              404 on a KV path (absent, deleted or destroyed version)
        ├── VaultCasConflict                 check-and-set did not match the current version
        └── VaultKeyError                    a transit key is missing or has the wrong type

hvac's exceptions carry the response text and JSON (`VaultError.text`, `.json`), and a KV read of a
deleted version echoes the whole response body; requests' exceptions carry the request. None of that
may travel further, so `translate` builds a fresh error from the status code and the path alone, and
callers raise it outside their `except` block so it has no `__context__` pointing back at hvac.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

import hvac.exceptions
import requests

from waguard.errors import Retryable, WaguardError

T = TypeVar("T")
NotFoundReason = Literal["absent", "deleted", "destroyed", "no such key"]


class VaultError(WaguardError):
    """Base class of every Vault error. Messages name an operation, a path and a version, never a value."""


class VaultUnavailable(VaultError, Retryable):
    """Vault cannot answer now: unreachable, sealed, overloaded or failing. Worth retrying later."""


class VaultPermissionDenied(VaultError):
    """The token is not allowed to do this (a policy gap, or an expired or revoked token)."""


class VaultSecretNotFound(VaultError):
    """No readable secret at a KV path (or at that version of it)."""

    def __init__(self, path: str, version: int | None = None, reason: NotFoundReason = "absent",
                 key: str | None = None) -> None:
        where = f"{path!r}" + (f" version {version}" if version is not None else "")
        detail = {
            "absent": "does not exist",
            "deleted": "was deleted (soft delete; it can be undeleted)",
            "destroyed": "was destroyed and cannot be recovered",
            "no such key": f"has no key {key!r}",
        }[reason]
        super().__init__(f"vault secret {where} {detail}")
        self.path, self.version, self.reason, self.key = path, version, reason, key


class VaultCasConflict(VaultError):
    """A check-and-set write lost: the secret changed since the version the caller read."""

    def __init__(self, path: str, cas: int | None) -> None:
        super().__init__(
            f"vault secret {path!r}: check-and-set expected current version {cas}, but it has changed; "
            "read it again and decide whether to retry"
        )
        self.path, self.cas = path, cas


class VaultKeyError(VaultError):
    """A transit key is missing, or exists with a different type than asked for."""


_TRANSIENT_STATUS = (hvac.exceptions.VaultDown, hvac.exceptions.InternalServerError,
                     hvac.exceptions.BadGateway, hvac.exceptions.RateLimitExceeded,
                     hvac.exceptions.VaultNotInitialized)


def _status(exc: hvac.exceptions.VaultError) -> str:
    name = type(exc).__name__
    return {
        "InvalidRequest": "HTTP 400", "Unauthorized": "HTTP 401", "Forbidden": "HTTP 403",
        "InvalidPath": "HTTP 404", "RateLimitExceeded": "HTTP 429", "InternalServerError": "HTTP 500",
        "VaultNotInitialized": "HTTP 501", "BadGateway": "HTTP 502",
        "VaultDown": "HTTP 503 (sealed or standby)",
    }.get(name, name)


def _vault_reason(exc: hvac.exceptions.VaultError) -> str:
    # Vault's own error strings (e.g. "check-and-set parameter did not match...") are server-side
    # constants; we only *match* on them, never copy them into a message.
    errors = exc.errors if isinstance(exc.errors, list) else []
    return " ".join(str(e) for e in errors).lower()


def is_cas_mismatch(exc: hvac.exceptions.VaultError) -> bool:
    """True when a 400 from a KV write means check-and-set did not match."""
    return isinstance(exc, hvac.exceptions.InvalidRequest) and "check-and-set" in _vault_reason(exc)


def is_bad_signature(exc: hvac.exceptions.VaultError) -> bool:
    """True when transit refused to verify a malformed signature (bad prefix, version or length)."""
    return isinstance(exc, hvac.exceptions.InvalidRequest) and "invalid signature" in _vault_reason(exc)


def is_missing_key(exc: hvac.exceptions.VaultError) -> bool:
    """True when transit answered that the named key does not exist."""
    reason = _vault_reason(exc)
    return isinstance(exc, hvac.exceptions.InvalidRequest) and "key not found" in reason


def _not_found_reason(exc: hvac.exceptions.VaultError) -> NotFoundReason:
    # A KV v2 read of a deleted or destroyed version is a 404 whose body still holds the version's
    # metadata (and `data: null`); an absent path or version is a 404 with an empty error list.
    body = exc.json if isinstance(exc.json, dict) else {}
    meta = ((body.get("data") or {}).get("metadata")) or {}
    if meta.get("destroyed"):
        return "destroyed"
    if meta.get("deletion_time"):
        return "deleted"
    return "absent"


def translate(exc: BaseException, *, op: str, addr: str, path: str | None = None,
              version: int | None = None, key: str | None = None) -> VaultError:
    """Map an hvac or requests exception to a waguard VaultError that carries no response text.

    Args:
        exc: what hvac or requests raised.
        op: what we were doing, e.g. "read secret" (goes into the message).
        addr: the Vault address (goes into connection errors).
        path: the KV path involved, if any.
        version: the KV version involved (for a write, the check-and-set version), if any.
        key: the transit key involved, if any.

    Returns:
        The error to raise. Raise it outside the `except` block that caught `exc`.
    """
    target = f" {path!r}" if path is not None else ""
    if version is not None:
        target += f" version {version}"
    if key is not None:
        target += f" transit key {key!r}"
    if isinstance(exc, requests.exceptions.Timeout):
        return VaultUnavailable(f"vault at {addr} timed out during {op}{target}")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return VaultUnavailable(f"vault at {addr} is unreachable during {op}{target} (connection failed)")
    if isinstance(exc, requests.exceptions.RequestException):
        return VaultUnavailable(f"vault at {addr}: {type(exc).__name__} during {op}{target}")
    if not isinstance(exc, hvac.exceptions.VaultError):
        return VaultError(f"vault {op}{target} failed: {type(exc).__name__}")
    if isinstance(exc, _TRANSIENT_STATUS):
        return VaultUnavailable(f"vault at {addr} could not serve {op}{target}: {_status(exc)}")
    if isinstance(exc, hvac.exceptions.Forbidden | hvac.exceptions.Unauthorized):
        return VaultPermissionDenied(
            f"vault denied {op}{target} ({_status(exc)}): the token's policy lacks this capability, "
            "or the token expired or was revoked"
        )
    if key is not None and (isinstance(exc, hvac.exceptions.InvalidPath) or is_missing_key(exc)):
        return VaultKeyError(f"vault{target} does not exist ({op}); bootstrap creates waguard's keys")
    if isinstance(exc, hvac.exceptions.InvalidPath) and path is not None:
        return VaultSecretNotFound(path, version, _not_found_reason(exc))
    if is_cas_mismatch(exc):
        return VaultCasConflict(path or "?", version)
    return VaultError(f"vault rejected {op}{target}: {_status(exc)}")


CAUGHT: tuple[type[BaseException], ...] = (hvac.exceptions.VaultError, requests.exceptions.RequestException)


def guarded(fn: Callable[[], T], *, op: str, addr: str, path: str | None = None,
            version: int | None = None, key: str | None = None) -> T:
    """Call `fn` (blocking hvac calls) and raise any hvac or requests error as a translated VaultError.

    Raises:
        VaultError: a subclass chosen by `translate`, with no `__context__` back to hvac's exception.
    """
    try:
        return fn()
    except CAUGHT as exc:
        error = translate(exc, op=op, addr=addr, path=path, version=version, key=key)
    # Raised here, outside the except block, so Python does not chain hvac's exception (and the
    # response text it holds) onto ours as __context__.
    raise error
