"""Webhooks as Meta sends them: payload builders (pure), signing, delivery, callback verification.

Payload shapes follow Meta's webhook reference pages (alerts-and-slack.md section 2.6): every body is
`{"object": "whatsapp_business_account", "entry": [{"id": <WABA id>, "time": <unix>, "changes":
[{"field": ..., "value": {...}}]}]}`.

Bytes: Meta's bodies are compact JSON with non-ASCII escaped as \\uXXXX; `encode` also escapes "/" as
"\\/" (PHP's json_encode style, which Meta's senders are commonly reported to use; not confirmed by
a Meta page). Either way a verifier that re-serialises the JSON instead of hashing the raw bytes
fails, which is the trap drills must catch. The signature is
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Hub-Signature-256"
DELIVERY_TIMEOUT_S = 15.0


# ---- payload builders -----------------------------------------------------------------------------


def envelope(waba_id: str, time: int, field: str, value: dict[str, Any]) -> dict[str, Any]:
    """One change on one WABA in Meta's webhook envelope."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "time": time, "changes": [{"value": value, "field": field}]}],
    }


def message_template_status_update(
    waba_id: str,
    *,
    time: int,
    event: str,
    template_id: str | int,
    name: str,
    language: str,
    reason: str | None = "NONE",
    category: str | None = None,
    disable_date: str | None = None,
    other_info: dict[str, str] | None = None,
    rejection_info: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`message_template_status_update`: event APPROVED, REJECTED, DISABLED, PAUSED, FLAGGED, ...

    `message_template_id` is an integer in Meta's payload. `disable_info` appears only for disabled
    templates, `other_info` for locked/unlocked/paused ones, `rejection_info` for INVALID_FORMAT.
    """
    value: dict[str, Any] = {
        "event": event,
        "message_template_id": int(template_id),
        "message_template_name": name,
        "message_template_language": language,
        "reason": reason,
    }
    if category is not None:
        value["message_template_category"] = category
    if disable_date is not None:
        value["disable_info"] = {"disable_date": disable_date}
    if other_info is not None:
        value["other_info"] = other_info
    if rejection_info is not None:
        value["rejection_info"] = rejection_info
    return envelope(waba_id, time, "message_template_status_update", value)


def account_update(
    waba_id: str, *, time: int, event: str, phone_number: str | None = None, **details: Any
) -> dict[str, Any]:
    """`account_update`: event ACCOUNT_VIOLATION, ACCOUNT_RESTRICTION, DISABLED_UPDATE, PARTNER_ADDED, ...

    `details` are the event's own objects, e.g. `violation_info={"violation_type": ...}`,
    `restriction_info=[{"restriction_type": ..., "expiration": ...}]`, `ban_info={...}`,
    `waba_info={"waba_id": ..., "owner_business_id": ...}`.
    """
    value: dict[str, Any] = {}
    if phone_number is not None:
        value["phone_number"] = phone_number
    value["event"] = event
    value.update(details)
    return envelope(waba_id, time, "account_update", value)


def security(
    waba_id: str, *, time: int, event: str, display_phone_number: str, requester: str | None = None
) -> dict[str, Any]:
    """`security`: event PIN_CHANGED, PIN_RESET_REQUEST (with `requester`), PIN_REQUEST_SUCCESS."""
    value: dict[str, Any] = {"display_phone_number": display_phone_number, "event": event}
    if requester is not None:
        value["requester"] = requester
    return envelope(waba_id, time, "security", value)


# ---- bytes and signatures -------------------------------------------------------------------------


def encode(payload: Any) -> bytes:
    """The body bytes as Meta sends them: compact, ASCII-only, '/' escaped."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()


def signature(body: bytes, app_secret: str) -> str:
    """The X-Hub-Signature-256 value for `body`."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


async def deliver(
    callback_url: str, body: bytes, signature_value: str | None, *, timeout_s: float = DELIVERY_TIMEOUT_S
) -> tuple[int | None, str | None]:
    """POST `body` to a callback as Meta would. Returns (HTTP status or None, error name or None)."""
    headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua"}
    if signature_value is not None:
        headers[SIGNATURE_HEADER] = signature_value
    try:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
            response = await client.post(callback_url, content=body, headers=headers)
        return response.status_code, None
    except httpx.HTTPError as err:
        return None, type(err).__name__


async def verify_callback(url: str, verify_token: str, *, timeout_s: float = 5.0) -> str | None:
    """Meta's check of a new callback: GET with hub.mode/hub.challenge/hub.verify_token.

    None when the callback echoed the challenge with HTTP 200, else Meta-style error detail.
    """
    challenge = str(secrets.randbelow(10**9))
    params = {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token}
    try:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
            response = await client.get(url, params=params)
    except httpx.HTTPError as err:
        return f"Couldn't connect to server ({type(err).__name__})"
    if response.status_code != 200:
        return f"HTTP Status Code = {response.status_code}; HTTP Message = {response.reason_phrase}"
    if response.text.strip() != challenge:
        return "The URL couldn't be validated. Response does not match challenge"
    return None
