"""Pure verifiers for every inbound source: raw bytes and header values in, None or `Rejected` out.

No I/O, no clock, no parsing of the body: the caller hands in the secrets (current first, then any
still accepted during a rotation), the raw body exactly as received and, where the source signs a
timestamp, `now`. Every comparison is `hmac.compare_digest` on ASCII bytes, after the header has been
checked against an anchored ASCII pattern (which also keeps compare_digest from raising on non-ASCII).

A missing secret is a rejection, never a skip: each verifier refuses when it has no secret to check with.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import SecretStr

from waguard.errors import WaguardError
from waguard.slack import errors as slack_errors
from waguard.slack.signing import verify_request

# "wrong-app": a Meta delivery signed by one registered app names a WABA of another (intake.businesses).
Reason = Literal["no-secret", "missing", "malformed", "stale", "mismatch", "wrong-app"]

_HUB = re.compile(r"sha256=[0-9a-f]{64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_UNIX_S = re.compile(r"[0-9]{1,12}")
_BEARER = re.compile(r"Bearer ([\x21-\x7e]{1,4096})", re.IGNORECASE)
DEFAULT_WINDOW_S = 300


class Rejected(WaguardError):
    """A delivery failed verification. `reason` is a short code safe for logs and metric labels.

    The message says what was wrong in general terms; it never repeats a header, a secret or the body.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


Secret = str | bytes | SecretStr


def _key(secret: Secret) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else secret


def _keys(secrets: Sequence[Secret]) -> list[bytes]:
    keys = [_key(s) for s in secrets]
    keys = [k for k in keys if k]
    if not keys:
        raise Rejected("no-secret", "no secret is configured for this source, so nothing can be verified")
    return keys


def hub_signature(secret: Secret, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, body)>`, the X-Hub-Signature-256 of GitHub and Meta."""
    return "sha256=" + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify_hub_signature(secrets: Sequence[Secret], body: bytes, header: str | None) -> int:
    """Check an X-Hub-Signature-256 header (GitHub, Meta) over the raw body.

    Args:
        secrets: the accepted secrets, current first (Meta: then the previous one inside its window).
        body: the raw request body.
        header: the header value, or None when absent.

    Returns:
        The index in `secrets` of the secret that matched (0: the current one).

    Raises:
        Rejected: no secret, no header, a header not in the `sha256=<64 hex>` form, or no match.
    """
    keys = _keys(secrets)
    if not header:
        raise Rejected("missing", "the X-Hub-Signature-256 header is missing")
    if not _HUB.fullmatch(header):
        raise Rejected("malformed",
                       "X-Hub-Signature-256 is not 'sha256=' followed by 64 lower-case hex digits")
    given = header.encode()
    matched = -1
    # Check every key, not just until the first match, so timing does not tell which one signed.
    for index, key in enumerate(keys):
        expected = b"sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(expected, given) and matched < 0:
            matched = index
    if matched < 0:
        raise Rejected("mismatch", "the signature does not match the body")
    return matched


def verify_bearer(secrets: Sequence[Secret], authorization: str | None) -> None:
    """Check an `Authorization: Bearer <token>` header (Alertmanager cannot sign, only authenticate).

    Raises:
        Rejected: no secret, no header, not a Bearer header, or the token does not match.
    """
    keys = _keys(secrets)
    if not authorization:
        raise Rejected("missing", "the Authorization header is missing")
    m = _BEARER.fullmatch(authorization.strip())
    if m is None:
        raise Rejected("malformed", "the Authorization header is not 'Bearer <token>'")
    given = m.group(1).encode()
    ok = False
    for key in keys:
        ok = hmac.compare_digest(key, given) or ok
    if not ok:
        raise Rejected("mismatch", "the bearer token does not match")


def grafana_signature(secret: Secret, body: bytes, timestamp: str | None = None) -> str:
    """Grafana's webhook HMAC: hex HMAC-SHA256 over `[ts + ":"] + body`, with no `sha256=` prefix."""
    message = (timestamp.encode() + b":" + body) if timestamp is not None else body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def verify_grafana(secrets: Sequence[Secret], body: bytes, signature: str | None, timestamp: str | None,
                   *, now: float, window_s: float = DEFAULT_WINDOW_S) -> None:
    """Check a Grafana alerting webhook's HMAC signature, and its timestamp when one is sent.

    Grafana signs only when its contact point has an HMAC secret; waguard requires one. The timestamp
    header is optional in Grafana: when present it is part of the signed message, so stripping it
    breaks the signature, and it must lie within `window_s` of `now` (either direction).

    Raises:
        Rejected: no secret, no signature, a malformed header, a stale timestamp, or no match.
    """
    keys = _keys(secrets)
    if not signature:
        raise Rejected("missing", "the Grafana signature header is missing")
    if not _HEX64.fullmatch(signature):
        raise Rejected("malformed", "the Grafana signature is not 64 lower-case hex digits")
    if timestamp is not None:
        if not _UNIX_S.fullmatch(timestamp):
            raise Rejected("malformed", "the Grafana timestamp is not a Unix time in whole seconds")
        if abs(now - int(timestamp)) > window_s:
            raise Rejected("stale", f"the Grafana timestamp is more than {window_s:g}s from now")
    given = signature.encode()
    ok = False
    for key in keys:
        ok = hmac.compare_digest(grafana_signature(key, body, timestamp).encode(), given) or ok
    if not ok:
        raise Rejected("mismatch", "the signature does not match the body")


_SLACK_REASONS: dict[type[Exception], Reason] = {
    slack_errors.SignatureMissing: "missing",
    slack_errors.SignatureMalformed: "malformed",
    slack_errors.RequestStale: "stale",
    slack_errors.SignatureMismatch: "mismatch",
}


def verify_slack(secret: Secret | None, body: bytes, timestamp: str | None, signature: str | None,
                 *, now: float, window_s: float = DEFAULT_WINDOW_S) -> None:
    """Check Slack's v0 request signature (5-minute window) through `waguard.slack.signing`.

    Raises:
        Rejected: with the reason of the Slack signing error (or "no-secret").
    """
    if secret is None or not _key(secret):
        raise Rejected("no-secret", "no Slack signing secret is configured, so nothing can be verified")
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else _key(secret).decode()
    try:
        verify_request(value, body, timestamp, signature, now=now, window_s=window_s)
    except slack_errors.SlackSignatureError as err:
        reason: Reason = next((r for cls, r in _SLACK_REASONS.items() if isinstance(err, cls)), "mismatch")
        raise Rejected(reason, str(err)) from None


def verify_token(secrets: Sequence[Secret], given: str | None) -> None:
    """Check Meta's `hub.verify_token` on the GET handshake, in constant time.

    Raises:
        Rejected: no secret, no token given, or no match.
    """
    keys = _keys(secrets)
    if not given:
        raise Rejected("missing", "hub.verify_token is missing")
    given_b = given.encode()
    ok = False
    for key in keys:
        ok = hmac.compare_digest(key, given_b) or ok
    if not ok:
        raise Rejected("mismatch", "hub.verify_token does not match")
