"""Meta's error codes map to the right class, and the class alone decides retrying."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waguard.errors import Retryable, WaguardError
from waguard.meta.errors import (
    MetaError,
    MetaInvalidRequest,
    MetaNotFound,
    MetaPermissionDenied,
    MetaRegistrationLocked,
    MetaThrottled,
    MetaTokenInvalid,
    MetaTransient,
    MetaUnavailable,
    MetaUnexpectedResponse,
    RegistrationBudgetExhausted,
    error_class_for,
    redact,
)

# (http status, code, subcode, is_transient) -> class, retryable
CASES = [
    (500, 1, None, False, MetaTransient, True),
    (500, 2, None, False, MetaTransient, True),
    (503, None, None, False, MetaTransient, True),
    (400, 100, None, True, MetaTransient, True),  # Meta says transient: trust it
    (400, 4, None, False, MetaThrottled, True),
    (400, 17, None, False, MetaThrottled, True),
    (400, 32, None, False, MetaThrottled, True),
    (400, 613, None, False, MetaThrottled, True),
    (429, 80007, None, True, MetaThrottled, True),
    (400, 80008, None, False, MetaThrottled, True),
    (429, None, None, False, MetaThrottled, True),  # plain 429 without an envelope
    (401, 190, 463, False, MetaTokenInvalid, False),
    (401, 190, None, True, MetaTokenInvalid, False),  # never retried, even if flagged transient
    (401, None, None, False, MetaTokenInvalid, False),
    (403, 10, None, False, MetaPermissionDenied, False),
    (403, 200, 1349174, False, MetaPermissionDenied, False),
    (403, 299, None, False, MetaPermissionDenied, False),
    (403, None, None, False, MetaPermissionDenied, False),
    (400, 133016, None, False, MetaRegistrationLocked, False),
    (429, 133016, None, True, MetaRegistrationLocked, False),  # the lock wins over 429/transient
    (400, 100, None, False, MetaInvalidRequest, False),
    (422, 131000, None, False, MetaInvalidRequest, False),
    (400, 100, 33, False, MetaNotFound, False),
    (404, 803, None, False, MetaNotFound, False),
    (404, None, None, False, MetaNotFound, False),
    (400, 133005, None, False, MetaInvalidRequest, False),  # PIN mismatch
    (400, 368, None, False, MetaInvalidRequest, False),  # policy block: wait for a human, not a loop
    (302, None, None, False, MetaError, False),
]


@pytest.mark.parametrize(("status", "code", "subcode", "transient", "cls", "retryable"), CASES)
def test_code_maps_to_class_and_retryability(
    status: int, code: int | None, subcode: int | None, transient: bool, cls: type[MetaError], retryable: bool
) -> None:
    chosen = error_class_for(status, code, subcode, transient)
    assert chosen is cls
    assert issubclass(chosen, Retryable) is retryable
    assert issubclass(chosen, MetaError) and issubclass(chosen, WaguardError)


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [
        (MetaUnavailable, True),
        (MetaUnexpectedResponse, False),
        (RegistrationBudgetExhausted, False),
    ],
)
def test_local_errors_retryability(cls: type[Exception], retryable: bool) -> None:
    assert issubclass(cls, Retryable) is retryable
    assert issubclass(cls, WaguardError)


def test_error_carries_meta_diagnosis_and_names_the_path() -> None:
    err = MetaRegistrationLocked(
        "Too many attempts",
        http_status=400,
        code=133016,
        subcode=None,
        fbtrace_id="AbC123",
        path="/1/deregister",
    )
    assert (err.http_status, err.code, err.fbtrace_id, err.path) == (400, 133016, "AbC123", "/1/deregister")
    assert "/1/deregister" in str(err) and "133016" in str(err) and "AbC123" in str(err)
    assert "Too many attempts" in str(err)
    assert repr(err).startswith("MetaRegistrationLocked(")


TOKEN = "EAAGm0PX4ZCpsBAKZBZCZAtokenvalue1234567890abcdef"
PROOF = "b13512356d1403d2449aa2e7369214f0459f0d3c08cb742b0aff4fe57aae36f5"


@pytest.mark.parametrize(
    "text",
    [
        f"Invalid OAuth access token - Cannot parse access token: {TOKEN}",
        f"bad appsecret_proof={PROOF}",
        f"url ...?access_token={TOKEN}&x=1",
        'echo {"pin": "123456"}',
        "input_token: whatever-value",
        f"plain {PROOF.upper()} hex",
        "opaque aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa tail",
    ],
)
def test_redact_cuts_token_shapes(text: str) -> None:
    out = redact(text)
    assert out is not None and "[redacted]" in out
    for secret in (TOKEN, PROOF, PROOF.upper(), "123456", "whatever-value", "a" * 57):
        assert secret not in out


def test_redact_keeps_ids_and_meta_wording_and_cuts_known_values() -> None:
    text = "Object with ID '106853218861309' does not exist (fbtrace_id AXsgnV2Cm3ZMGF3dF_cfYIn)"
    assert redact(text) == text
    assert redact("your secret is hunter2", secrets=["hunter2"]) == "your secret is [redacted]"
    assert redact(None) is None


def test_messages_are_redacted_on_construction() -> None:
    err = MetaTokenInvalid(f"bad token {TOKEN}", user_msg=f"proof {PROOF}", details="pin: 654321", code=190)
    for shown in (str(err), repr(err), err.message, err.user_msg or "", err.details or ""):
        assert TOKEN not in shown and PROOF not in shown and "654321" not in shown


def test_budget_exhausted_names_number_and_time_only() -> None:
    err = RegistrationBudgetExhausted("106853218861309", limit=10, window_s=72 * 3600, retry_at=1_700_000_000)
    assert "106853218861309" in str(err) and "72 h" in str(err) and "1700000000" in str(err)
    assert err.retry_at == 1_700_000_000 and not isinstance(err, Retryable)


# A secret that appears anywhere in Meta's text never survives redaction (secrets hold a digit, so
# the marker "[redacted]" itself cannot spell one).
SECRET_VALUES = st.text(string.ascii_letters + string.digits + "-_", min_size=8, max_size=64).filter(
    lambda s: any(c.isdigit() for c in s)
)


@given(before=st.text(max_size=80), secret=SECRET_VALUES, after=st.text(max_size=80))
def test_redact_never_emits_a_registered_secret(before: str, secret: str, after: str) -> None:
    out = redact(before + secret + after, secrets=[secret])
    assert out is not None and secret not in out
    err = MetaInvalidRequest(before + secret + after, user_msg=secret, details=secret, secrets=[secret])
    assert secret not in str(err) and secret not in repr(err)
