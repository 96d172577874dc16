"""Slack request signing (v0), pure: no clock, no I/O.

Slack signs every request it sends to a Request URL (button clicks, slash commands):
`X-Slack-Signature: v0=<hex HMAC-SHA256(signing_secret, "v0:{ts}:{raw body}")>` with
`X-Slack-Request-Timestamp: {ts}` in Unix seconds. The intake service verifies with `verify_request`
on the raw bytes, before parsing; the drills' stand-in responder signs with `signature_headers`.

The time window (300 s either way, as slack_sdk's SignatureVerifier) limits replays but does not stop
one within the window: the caller also de-duplicates (see alerts-and-slack.md §5).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from pydantic import SecretStr

from waguard.errors import ConfigError
from waguard.slack.errors import RequestStale, SignatureMalformed, SignatureMismatch, SignatureMissing

VERSION = "v0"
HEADER_TIMESTAMP = "X-Slack-Request-Timestamp"
HEADER_SIGNATURE = "X-Slack-Signature"
DEFAULT_WINDOW_S = 300

# Slack sends whole seconds and lower-case hex; anything else is not from Slack. Anchored and ASCII
# only, which also keeps hmac.compare_digest from raising TypeError on non-ASCII input.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


def _secret_bytes(signing_secret: str | SecretStr) -> bytes:
    value = signing_secret.get_secret_value() if isinstance(signing_secret, SecretStr) else signing_secret
    if not value:
        # A missing secret must reject every request, never wave it through.
        raise ConfigError("the Slack signing secret is empty; refusing to sign or verify")
    return value.encode()


def sign_request(signing_secret: str | SecretStr, timestamp: int, body: bytes) -> str:
    """Slack's v0 signature of `body` sent at `timestamp`: "v0=" + hex HMAC-SHA256.

    Raises:
        ConfigError: the signing secret is empty.
    """
    base = f"{VERSION}:{int(timestamp)}:".encode() + body
    digest = hmac.new(_secret_bytes(signing_secret), base, hashlib.sha256).hexdigest()
    return f"{VERSION}={digest}"


def signature_headers(signing_secret: str | SecretStr, timestamp: int, body: bytes) -> dict[str, str]:
    """The two headers Slack would send with `body` at `timestamp` (for the stand-in responder)."""
    return {
        HEADER_TIMESTAMP: str(int(timestamp)),
        HEADER_SIGNATURE: sign_request(signing_secret, timestamp, body),
    }


def verify_request(
    signing_secret: str | SecretStr,
    body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    *,
    now: float,
    window_s: float = DEFAULT_WINDOW_S,
) -> None:
    """Check a Slack request's signature over its raw body; return None or raise.

    Checks, in order: both headers present, both well-formed, the timestamp within `window_s` of
    `now` (either direction, a boundary value passes), then the HMAC in constant time.

    Args:
        signing_secret: the app's signing secret.
        body: the raw request body, exactly as received.
        timestamp_header: the X-Slack-Request-Timestamp value, or None when absent.
        signature_header: the X-Slack-Signature value, or None when absent.
        now: the current Unix time in seconds (passed in so tests and drills control the clock).
        window_s: how far the timestamp may be from `now`.

    Raises:
        SignatureMissing: a header is absent or empty.
        SignatureMalformed: a header is not in Slack's format.
        RequestStale: the timestamp is outside the window.
        SignatureMismatch: the signature does not match.
        ConfigError: the signing secret is empty.
    """
    secret = _secret_bytes(signing_secret)
    if not timestamp_header:
        raise SignatureMissing(f"missing {HEADER_TIMESTAMP} header")
    if not signature_header:
        raise SignatureMissing(f"missing {HEADER_SIGNATURE} header")
    ts_text, sig_text = timestamp_header, signature_header
    if not _TIMESTAMP.fullmatch(ts_text):
        raise SignatureMalformed(f"{HEADER_TIMESTAMP} is not a Unix time in whole seconds")
    if not _SIGNATURE.fullmatch(sig_text):
        raise SignatureMalformed(f"{HEADER_SIGNATURE} is not 'v0=' followed by 64 lower-case hex digits")
    timestamp = int(ts_text)
    skew = now - timestamp
    if abs(skew) > window_s:
        # Say which way, not the values: enough to tell a replay from a skewed clock.
        direction = "old" if skew > 0 else "in the future"
        raise RequestStale(f"request timestamp is more than {window_s:g}s {direction}")
    base = f"{VERSION}:{ts_text}:".encode() + body  # the timestamp exactly as signed
    expected = f"{VERSION}=" + hmac.new(secret, base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), sig_text.encode()):
        raise SignatureMismatch("Slack signature does not match the request body")
