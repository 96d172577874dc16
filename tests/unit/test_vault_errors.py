"""Translation of hvac's and requests' exceptions into waguard's Vault errors (pure, no server)."""

from __future__ import annotations

import traceback

import hvac.exceptions
import pytest
import requests

from waguard.errors import Retryable
from waguard.vault.errors import (
    VaultCasConflict,
    VaultError,
    VaultKeyError,
    VaultPermissionDenied,
    VaultSecretNotFound,
    VaultUnavailable,
    guarded,
    translate,
)

SECRET = "EAAG-super-secret-token-value"
ADDR = "http://127.0.0.1:8200"


def hvac_error(cls: type[hvac.exceptions.VaultError], *errors: str,
               json: object = None) -> hvac.exceptions.VaultError:
    # What hvac builds from a response: Vault's error strings plus the whole body as text and JSON.
    body = json if json is not None else {"errors": list(errors)}
    return cls(errors=list(errors) or None, method="get", url=f"{ADDR}/v1/secret/data/{SECRET}",
               text=f'{{"echo": "{SECRET}"}}', json=body)


@pytest.mark.parametrize(("exc", "expected"), [
    (requests.exceptions.ConnectionError(f"refused {SECRET}"), VaultUnavailable),
    (requests.exceptions.ReadTimeout(f"slow {SECRET}"), VaultUnavailable),
    (hvac_error(hvac.exceptions.VaultDown, "Vault is sealed"), VaultUnavailable),
    (hvac_error(hvac.exceptions.InternalServerError, f"boom {SECRET}"), VaultUnavailable),
    (hvac_error(hvac.exceptions.BadGateway), VaultUnavailable),
    (hvac_error(hvac.exceptions.RateLimitExceeded), VaultUnavailable),
    (hvac_error(hvac.exceptions.Forbidden, "permission denied"), VaultPermissionDenied),
    (hvac_error(hvac.exceptions.Unauthorized), VaultPermissionDenied),
    (hvac_error(hvac.exceptions.InvalidPath), VaultSecretNotFound),
    (hvac_error(hvac.exceptions.InvalidRequest, "check-and-set parameter did not match the current version"),
     VaultCasConflict),
    (hvac_error(hvac.exceptions.InvalidRequest, f"bad input {SECRET}"), VaultError),
    (hvac_error(hvac.exceptions.UnexpectedError, SECRET), VaultError),
])
def test_translation_picks_the_type_and_drops_the_response(exc: BaseException, expected: type) -> None:
    err = translate(exc, op="read secret", addr=ADDR, path="meta/app-secret", version=3)
    assert type(err) is expected
    assert isinstance(err, Retryable) == (expected is VaultUnavailable)
    assert "meta/app-secret" in str(err)
    assert SECRET not in str(err) and SECRET not in repr(err)


@pytest.mark.parametrize(("metadata", "reason"), [
    ({"deletion_time": "", "destroyed": True, "version": 1}, "destroyed"),
    ({"deletion_time": "2026-01-01T00:00:00Z", "destroyed": False, "version": 1}, "deleted"),
])
def test_not_found_says_why(metadata: dict[str, object], reason: str) -> None:
    exc = hvac_error(hvac.exceptions.InvalidPath, json={"data": {"data": None, "metadata": metadata}})
    err = translate(exc, op="read secret", addr=ADDR, path="meta/token", version=1)
    assert isinstance(err, VaultSecretNotFound)
    assert (err.path, err.version, err.reason) == ("meta/token", 1, reason)
    assert reason in str(err)


@pytest.mark.parametrize("exc", [
    hvac_error(hvac.exceptions.InvalidPath),
    hvac_error(hvac.exceptions.InvalidRequest, "signing key not found"),
    hvac_error(hvac.exceptions.InvalidRequest, "signature verification key not found"),
])
def test_missing_transit_key(exc: hvac.exceptions.VaultError) -> None:
    err = translate(exc, op="sign", addr=ADDR, key="waguard-evidence")
    assert isinstance(err, VaultKeyError) and "'waguard-evidence'" in str(err)


def test_unavailable_names_the_address() -> None:
    err = translate(requests.exceptions.ConnectionError(), op="read secret", addr=ADDR, path="p")
    assert ADDR in str(err) and "read secret" in str(err)


def test_guarded_raises_without_chaining_hvac() -> None:
    def fail() -> None:
        raise hvac_error(hvac.exceptions.Forbidden, f"permission denied for {SECRET}")

    with pytest.raises(VaultPermissionDenied) as err:
        guarded(fail, op="write secret", addr=ADDR, path="meta/token")
    assert err.value.__context__ is None and err.value.__cause__ is None
    assert SECRET not in "".join(traceback.format_exception(err.value))


def test_guarded_passes_results_and_other_errors_through() -> None:
    assert guarded(lambda: 42, op="x", addr=ADDR) == 42

    def bug() -> None:
        raise KeyError("data")

    with pytest.raises(KeyError):
        guarded(bug, op="x", addr=ADDR)
