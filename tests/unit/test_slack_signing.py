"""Slack request signing: Slack's published vector, slack_sdk as a second opinion, every rejection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from slack_sdk.signature import Clock, SignatureVerifier

from waguard.errors import ConfigError
from waguard.slack.errors import (
    RequestStale,
    SignatureMalformed,
    SignatureMismatch,
    SignatureMissing,
    SlackSignatureError,
)
from waguard.slack.signing import (
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    sign_request,
    signature_headers,
    verify_request,
)

# Slack's documented example (also in slack_sdk's tests).
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TS = 1531420618
BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554"
    b"%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def test_slack_published_vector() -> None:
    assert sign_request(SECRET, TS, BODY) == SIGNATURE
    verify_request(SECRET, BODY, str(TS), SIGNATURE, now=TS + 10)


def test_agrees_with_slack_sdk_signature_verifier() -> None:
    sdk = SignatureVerifier(SECRET, clock=FixedClock(TS + 10))
    assert sdk.generate_signature(timestamp=str(TS), body=BODY) == sign_request(SECRET, TS, BODY)
    assert sdk.is_valid(body=BODY, timestamp=str(TS), signature=sign_request(SECRET, TS, BODY))


def test_secret_may_be_a_secretstr() -> None:
    assert sign_request(SecretStr(SECRET), TS, BODY) == SIGNATURE
    verify_request(SecretStr(SECRET), BODY, str(TS), SIGNATURE, now=TS)


def test_signature_headers_verify() -> None:
    body = b'payload=%7B%22type%22%3A%22block_actions%22%7D'
    headers = signature_headers(SECRET, 1700000000, body)
    assert set(headers) == {HEADER_TIMESTAMP, HEADER_SIGNATURE}
    verify_request(SECRET, body, headers[HEADER_TIMESTAMP], headers[HEADER_SIGNATURE], now=1700000001)


@pytest.mark.parametrize("now", [TS - 300, TS + 300, TS])
def test_window_boundary_is_accepted(now: float) -> None:
    verify_request(SECRET, BODY, str(TS), SIGNATURE, now=now)


def test_custom_window() -> None:
    verify_request(SECRET, BODY, str(TS), SIGNATURE, now=TS + 600, window_s=600)
    with pytest.raises(RequestStale):
        verify_request(SECRET, BODY, str(TS), SIGNATURE, now=TS + 61, window_s=60)


@pytest.mark.parametrize(
    ("body", "ts_header", "sig_header", "now", "error", "match"),
    [
        (BODY, None, SIGNATURE, TS, SignatureMissing, "X-Slack-Request-Timestamp"),
        (BODY, "", SIGNATURE, TS, SignatureMissing, "X-Slack-Request-Timestamp"),
        (BODY, str(TS), None, TS, SignatureMissing, "X-Slack-Signature"),
        (BODY, str(TS), "", TS, SignatureMissing, "X-Slack-Signature"),
        (BODY, "abc", SIGNATURE, TS, SignatureMalformed, "Unix time"),
        (BODY, "1531420618.5", SIGNATURE, TS, SignatureMalformed, "Unix time"),
        (BODY, "-1531420618", SIGNATURE, TS, SignatureMalformed, "Unix time"),
        (BODY, " 1531420618", SIGNATURE, TS, SignatureMalformed, "Unix time"),
        (BODY, "1531420618\n", SIGNATURE, TS, SignatureMalformed, "Unix time"),
        (BODY, str(TS), "v1=" + SIGNATURE[3:], TS, SignatureMalformed, "v0="),
        (BODY, str(TS), SIGNATURE.upper(), TS, SignatureMalformed, "v0="),
        (BODY, str(TS), SIGNATURE[:-1], TS, SignatureMalformed, "v0="),
        (BODY, str(TS), SIGNATURE[:-1] + "é", TS, SignatureMalformed, "v0="),
        (BODY, str(TS), SIGNATURE, TS + 301, RequestStale, "old"),
        (BODY, str(TS), SIGNATURE, TS - 301, RequestStale, "future"),
        (BODY + b"&x=1", str(TS), SIGNATURE, TS, SignatureMismatch, "does not match"),
        (BODY[:-1], str(TS), SIGNATURE, TS, SignatureMismatch, "does not match"),
        (BODY, str(TS + 1), SIGNATURE, TS, SignatureMismatch, "does not match"),
        (BODY, str(TS), "v0=" + "0" * 64, TS, SignatureMismatch, "does not match"),
    ],
    ids=[
        "ts-absent", "ts-empty", "sig-absent", "sig-empty", "ts-letters", "ts-fraction", "ts-negative",
        "ts-space", "ts-newline", "sig-v1", "sig-upper", "sig-short", "sig-non-ascii", "stale-old",
        "stale-future", "body-appended", "body-truncated", "ts-changed", "sig-zeros",
    ],
)
def test_rejections(body: bytes, ts_header: str | None, sig_header: str | None, now: float,
                    error: type[SlackSignatureError], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        verify_request(SECRET, body, ts_header, sig_header, now=now)
    assert isinstance(info.value, SlackSignatureError)
    assert SECRET not in str(info.value)
    assert SIGNATURE[3:] not in str(info.value)


def test_wrong_secret_is_a_mismatch() -> None:
    with pytest.raises(SignatureMismatch):
        verify_request("another-secret", BODY, str(TS), SIGNATURE, now=TS)


@pytest.mark.parametrize("secret", ["", SecretStr("")])
def test_empty_secret_is_refused_not_skipped(secret: str | SecretStr) -> None:
    with pytest.raises(ConfigError):
        sign_request(secret, TS, BODY)
    with pytest.raises(ConfigError):
        verify_request(secret, BODY, str(TS), SIGNATURE, now=TS)


secrets_ = st.text(min_size=1, max_size=64)
timestamps = st.integers(min_value=0, max_value=10**11)


@given(secret=secrets_, ts=timestamps, body=st.binary(max_size=2048))
def test_sign_then_verify_round_trips(secret: str, ts: int, body: bytes) -> None:
    verify_request(secret, body, str(ts), sign_request(secret, ts, body), now=ts)


@given(secret=secrets_, ts=timestamps, body=st.binary(min_size=1, max_size=512), data=st.data())
def test_any_flipped_byte_fails(secret: str, ts: int, body: bytes, data: st.DataObject) -> None:
    signature = sign_request(secret, ts, body)
    i = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    tampered = body[:i] + bytes([body[i] ^ flip]) + body[i + 1:]
    with pytest.raises(SignatureMismatch):
        verify_request(secret, tampered, str(ts), signature, now=ts)


# slack_sdk decodes the body as UTF-8 before signing (ours signs the raw bytes), so compare on text.
@given(ts=timestamps, body=st.text(max_size=512).map(str.encode),
       skew=st.integers(min_value=-400, max_value=400))
def test_same_verdict_as_slack_sdk(ts: int, body: bytes, skew: int) -> None:
    signature = sign_request(SECRET, ts, body)
    sdk_ok = SignatureVerifier(SECRET, clock=FixedClock(ts + skew)).is_valid(body, str(ts), signature)
    try:
        verify_request(SECRET, body, str(ts), signature, now=ts + skew)
        ours_ok = True
    except SlackSignatureError:
        ours_ok = False
    assert ours_ok == sdk_ok
