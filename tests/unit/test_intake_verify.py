"""The intake's verifiers, table-driven: vendors' published vectors, independent signers, every rejection."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier

from waguard.intake.verify import (
    Rejected,
    grafana_signature,
    hub_signature,
    verify_bearer,
    verify_grafana,
    verify_hub_signature,
    verify_slack,
    verify_token,
)

# GitHub's documented test vector (validating-webhook-deliveries.md), also reproduced by
# @octokit/webhooks-methods.
GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# Slack's documented example (docs.slack.dev "verifying requests"; slack_sdk's own tests use it).
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554"
    b"%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def reason(fn, *args, **kwargs) -> str | None:
    try:
        result = fn(*args, **kwargs)
    except Rejected as err:
        return err.reason
    return "ok" if result in (None, 0) else f"ok:{result}"


# --- X-Hub-Signature-256 (GitHub, Meta) --------------------------------------------------------


def test_github_published_vector() -> None:
    assert hub_signature(GH_SECRET, GH_BODY) == GH_SIGNATURE
    assert verify_hub_signature([GH_SECRET], GH_BODY, GH_SIGNATURE) == 0


@pytest.mark.parametrize(
    ("secrets", "body", "header", "expected"),
    [
        ([GH_SECRET], GH_BODY, GH_SIGNATURE, "ok"),
        ([SecretStr(GH_SECRET)], GH_BODY, GH_SIGNATURE, "ok"),
        (["new-secret", GH_SECRET], GH_BODY, GH_SIGNATURE, "ok:1"),  # the previous secret matched
        ([GH_SECRET], b"Hello, World?", GH_SIGNATURE, "mismatch"),  # tampered body
        ([GH_SECRET], GH_BODY + b"\n", GH_SIGNATURE, "mismatch"),  # re-serialised body
        (["wrong"], GH_BODY, GH_SIGNATURE, "mismatch"),
        ([GH_SECRET], GH_BODY, None, "missing"),
        ([GH_SECRET], GH_BODY, "", "missing"),
        ([GH_SECRET], GH_BODY, GH_SIGNATURE[:-1], "malformed"),  # truncated
        ([GH_SECRET], GH_BODY, GH_SIGNATURE.upper(), "malformed"),
        ([GH_SECRET], GH_BODY, GH_SIGNATURE.removeprefix("sha256="), "malformed"),
        ([GH_SECRET], GH_BODY, "sha1=" + "0" * 40, "malformed"),
        ([GH_SECRET], GH_BODY, GH_SIGNATURE + " ", "malformed"),
        ([GH_SECRET], GH_BODY, "sha256=" + "é" * 64, "malformed"),  # non-ASCII never reaches compare
        ([], GH_BODY, GH_SIGNATURE, "no-secret"),
        ([""], GH_BODY, GH_SIGNATURE, "no-secret"),
        ([SecretStr("")], GH_BODY, GH_SIGNATURE, "no-secret"),
    ],
)
def test_hub_signature(secrets, body, header, expected) -> None:
    assert reason(verify_hub_signature, secrets, body, header) == expected


@given(secret=st.text(min_size=1, max_size=64), body=st.binary(max_size=2048), data=st.data())
def test_hub_any_changed_byte_fails(secret: str, body: bytes, data: st.DataObject) -> None:
    header = hub_signature(secret, body)
    assert verify_hub_signature([secret], body, header) == 0
    if body:
        i = data.draw(st.integers(0, len(body) - 1))
        flipped = body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1 :]
        assert reason(verify_hub_signature, [secret], flipped, header) == "mismatch"


# --- Bearer (Alertmanager) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secrets", "header", "expected"),
    [
        (["test-shared-token"], "Bearer test-shared-token", "ok"),
        (["test-shared-token"], "bearer test-shared-token", "ok"),  # scheme is case-insensitive
        (["test-shared-token"], "Bearer test-shared-tokeN", "mismatch"),
        (["test-shared-token"], "Bearer test-shared-toke", "mismatch"),  # truncated
        (["test-shared-token"], "Basic YW06czNjcmV0", "malformed"),
        (["test-shared-token"], "Bearer ", "malformed"),
        (["test-shared-token"], "test-shared-token", "malformed"),
        (["test-shared-token"], None, "missing"),
        ([], "Bearer anything", "no-secret"),
        ([""], "Bearer ", "no-secret"),
    ],
)
def test_bearer(secrets, header, expected) -> None:
    assert reason(verify_bearer, secrets, header) == expected


# --- Grafana HMAC (grafana/alerting http/hmac.go: hex, no prefix, optional "ts:" prefix) ---------

NOW = 1_764_000_000


def independent_grafana(secret: str, body: bytes, ts: str | None) -> str:
    message = f"{ts}:".encode() + body if ts is not None else body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("sig_of", "ts", "sent_ts", "now", "expected"),
    [
        ((None,), None, None, NOW, "ok"),
        ((str(NOW),), str(NOW), str(NOW), NOW, "ok"),
        ((str(NOW),), str(NOW), str(NOW), NOW + 300, "ok"),  # boundary passes
        ((str(NOW),), str(NOW), str(NOW), NOW + 301, "stale"),
        ((str(NOW),), str(NOW), str(NOW), NOW - 301, "stale"),  # from the future
        ((str(NOW),), str(NOW), None, NOW, "mismatch"),  # timestamp stripped
        ((None,), None, str(NOW), NOW, "mismatch"),  # timestamp added
        ((str(NOW),), str(NOW), str(NOW + 1), NOW, "mismatch"),  # timestamp changed
        ((str(NOW),), str(NOW), "1.5", NOW, "malformed"),
    ],
)
def test_grafana(sig_of, ts, sent_ts, now, expected) -> None:
    body = b'{"version":"1","status":"firing"}'
    sig = independent_grafana("grafana-secret", body, sig_of[0])
    assert grafana_signature("grafana-secret", body, ts) == independent_grafana("grafana-secret", body, ts)
    assert reason(verify_grafana, ["grafana-secret"], body, sig, sent_ts, now=now) == expected


@pytest.mark.parametrize(
    ("secrets", "sig", "expected"),
    [
        (["s"], None, "missing"),
        (["s"], "sha256=" + "0" * 64, "malformed"),  # GitHub-style prefix is not Grafana's format
        (["s"], "0" * 63, "malformed"),
        ([], "0" * 64, "no-secret"),
    ],
)
def test_grafana_rejections(secrets, sig, expected) -> None:
    assert reason(verify_grafana, secrets, b"{}", sig, None, now=NOW) == expected


# --- Slack v0 (via waguard.slack.signing) -------------------------------------------------------


def test_slack_published_vector() -> None:
    assert (
        reason(verify_slack, SLACK_SECRET, SLACK_BODY, SLACK_TS, SLACK_SIGNATURE, now=int(SLACK_TS)) == "ok"
    )


@pytest.mark.parametrize(
    ("secret", "body", "ts", "sig", "now", "expected"),
    [
        (SLACK_SECRET, SLACK_BODY, SLACK_TS, SLACK_SIGNATURE, int(SLACK_TS) + 300, "ok"),
        (SLACK_SECRET, SLACK_BODY, SLACK_TS, SLACK_SIGNATURE, int(SLACK_TS) + 301, "stale"),
        (SLACK_SECRET, SLACK_BODY + b"x", SLACK_TS, SLACK_SIGNATURE, int(SLACK_TS), "mismatch"),
        (SLACK_SECRET, SLACK_BODY, SLACK_TS, SLACK_SIGNATURE[:-2], int(SLACK_TS), "malformed"),
        (SLACK_SECRET, SLACK_BODY, None, SLACK_SIGNATURE, int(SLACK_TS), "missing"),
        (SLACK_SECRET, SLACK_BODY, SLACK_TS, None, int(SLACK_TS), "missing"),
        (None, SLACK_BODY, SLACK_TS, SLACK_SIGNATURE, int(SLACK_TS), "no-secret"),
        ("", SLACK_BODY, SLACK_TS, SLACK_SIGNATURE, int(SLACK_TS), "no-secret"),
    ],
)
def test_slack(secret, body, ts, sig, now, expected) -> None:
    assert reason(verify_slack, secret, body, ts, sig, now=now) == expected


@given(body=st.text(max_size=512).map(str.encode), ts=st.integers(1_500_000_000, 2_000_000_000))
def test_slack_sdk_signs_what_we_accept(body: bytes, ts: int) -> None:
    sig = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=str(ts), body=body)
    assert reason(verify_slack, SecretStr(SLACK_SECRET), body, str(ts), sig, now=ts) == "ok"


# --- Meta hub.verify_token ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secrets", "given_", "expected"),
    [
        (["verify-me"], "verify-me", "ok"),
        (["verify-me"], "verify-m", "mismatch"),
        (["verify-me"], "", "missing"),
        (["verify-me"], None, "missing"),
        ([], "verify-me", "no-secret"),
    ],
)
def test_verify_token(secrets, given_, expected) -> None:
    assert reason(verify_token, secrets, given_) == expected


def test_rejection_messages_never_repeat_inputs() -> None:
    for fn, args in [
        (verify_hub_signature, (["topsecret"], b"body-text", "sha256=" + "a" * 64)),
        (verify_bearer, (["topsecret"], "Bearer guessed-token")),
        (verify_grafana, (["topsecret"], b"body-text", "b" * 64, None)),
    ]:
        with pytest.raises(Rejected) as info:
            fn(*args, now=NOW) if fn is verify_grafana else fn(*args)
        text = str(info.value)
        assert (
            "topsecret" not in text
            and "body-text" not in text
            and "guessed" not in text
            and "a" * 64 not in text
        )
