"""The Graph API protocol as pure functions: the requests to send (answers are read in `answers.py`).

No I/O here (the sans-I/O shape of gidgethub's `sansio.py`): `client.py` only moves bytes. Secret
values (PIN, verify token, input token) stay wrapped in `SecretStr` inside a `GraphRequest`, so its
repr is safe to log; `unwrap_secrets` reveals them only at the transport boundary.

Paths are given without the version (`/123/deregister`); the client prefixes `/{version}`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import SecretStr

import waguard
from waguard.meta.usage import Usage as Usage  # re-exported: wire is the protocol module callers import
from waguard.meta.usage import backoff_seconds as backoff_seconds
from waguard.meta.usage import parse_app_usage as parse_app_usage
from waguard.meta.usage import parse_business_usage as parse_business_usage
from waguard.meta.usage import usage_peak as usage_peak

Method = Literal["GET", "POST", "DELETE"]
Params = Mapping[str, "str | SecretStr"]

GRAPH_ID = re.compile(r"[0-9]+")  # patterns are used with fullmatch: "$" would let "1\n" through
PIN = re.compile(r"[0-9]{6}")
REGION = re.compile(r"[A-Z]{2}")
SCOPE = re.compile(r"[a-z_]+")
FIELD = re.compile(r"[a-z_][a-z0-9_{}.,()]*")
MAX_OVERRIDE_URI = 200  # Meta's limit on override_callback_uri (webhook override page)

# What an incident snapshot needs. `messaging_limit_tier` is deprecated: Meta says to read
# `whatsapp_business_manager_messaging_limit` instead.
DEFAULT_PHONE_FIELDS: tuple[str, ...] = (
    "id", "display_phone_number", "verified_name", "status", "quality_rating", "code_verification_status",
    "name_status", "platform_type", "throughput", "account_mode", "is_official_business_account",
    "health_status", "whatsapp_business_manager_messaging_limit",
)  # fmt: skip
DEFAULT_TEMPLATE_FIELDS: tuple[str, ...] = (
    "id", "name", "status", "category", "language", "components", "rejected_reason", "quality_score",
)  # fmt: skip
TEMPLATE_STATUSES = frozenset(
    ("APPROVED", "ARCHIVED", "DELETED", "DISABLED", "IN_APPEAL", "LIMIT_EXCEEDED", "PAUSED", "PENDING",
     "PENDING_DELETION", "REJECTED")
)  # fmt: skip
BUSINESS_USER_FIELDS: tuple[str, ...] = ("id", "name", "email", "role", "tasks")
SYSTEM_USER_FIELDS: tuple[str, ...] = ("id", "name", "role", "created_by", "created_time")
ASSIGNED_USER_FIELDS: tuple[str, ...] = ("id", "name", "tasks")


def user_agent() -> str:
    """The explicit User-Agent: Meta's spec validates it against `name/X.Y.Z`."""
    return f"waguard/{waguard.__version__}"


def appsecret_proof(token: str | SecretStr, app_secret: str | SecretStr) -> str:
    """hex(HMAC-SHA256(key=app_secret, msg=access_token)), Meta's `appsecret_proof` parameter."""
    tok = token.get_secret_value() if isinstance(token, SecretStr) else token
    key = app_secret.get_secret_value() if isinstance(app_secret, SecretStr) else app_secret
    return hmac.new(key.encode(), tok.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class GraphRequest:
    """One Graph call, before the version, auth and proof are added. Secret values are `SecretStr`."""

    method: Method
    path: str
    params: Params = field(default_factory=dict)
    json: Mapping[str, Any] | None = None
    form: Params | None = None


def unwrap_secrets(value: Any) -> Any:
    """Reveal `SecretStr` values inside a params/json/form structure, for the transport only."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Mapping):
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unwrap_secrets(v) for v in value]
    return value


# ---- validation of local input: errors name the field, never the value --------------------------


def _graph_id(name: str, value: str) -> str:
    if not isinstance(value, str) or not GRAPH_ID.fullmatch(value):
        raise ValueError(f"{name} must be a numeric Graph object id")
    return value


def check_pin(pin: SecretStr, name: str = "pin") -> SecretStr:
    """A two-step PIN is exactly six digits (OAS pattern ^[0-9]{6}$)."""
    if not isinstance(pin, SecretStr) or not PIN.fullmatch(pin.get_secret_value()):
        raise ValueError(f"{name} must be a SecretStr of exactly 6 digits")
    return pin


def _fields(fields: Sequence[str], name: str = "fields") -> str:
    if isinstance(fields, str) or not fields or not all(FIELD.fullmatch(f) for f in fields):
        raise ValueError(f"{name} must be a non-empty sequence of Graph field names")
    return ",".join(fields)


def _text(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip() or any(ord(c) < 32 for c in value):
        raise ValueError(f"{name} must be a non-empty single-line string")
    return value


# ---- request builders, one per Graph operation ----------------------------------------------------


def get_phone_number(phone_number_id: str, fields: Sequence[str] = DEFAULT_PHONE_FIELDS) -> GraphRequest:
    """GET /{phone-number-id}?fields= (OAS getPhoneNumberById)."""
    path = f"/{_graph_id('phone_number_id', phone_number_id)}"
    return GraphRequest("GET", path, {"fields": _fields(fields)})


def list_phone_numbers(
    waba_id: str, fields: Sequence[str] = DEFAULT_PHONE_FIELDS, after: str | None = None
) -> GraphRequest:
    """GET /{waba-id}/phone_numbers (OAS getWhatsAppBusinessAccountPhoneNumbers)."""
    params: dict[str, str | SecretStr] = {"fields": _fields(fields)}
    if after:
        params["after"] = after
    return GraphRequest("GET", f"/{_graph_id('waba_id', waba_id)}/phone_numbers", params)


def deregister_phone_number(phone_number_id: str) -> GraphRequest:
    """POST /{phone-number-id}/deregister (OAS deregisterPhoneNumber). Counts against the 72 h budget."""
    return GraphRequest("POST", f"/{_graph_id('phone_number_id', phone_number_id)}/deregister")


def register_phone_number(
    phone_number_id: str, pin: SecretStr, data_localization_region: str | None = None
) -> GraphRequest:
    """POST /{phone-number-id}/register (OAS registerWhatsAppBusinessPhoneNumber); uses the 72 h budget."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "pin": check_pin(pin)}
    if data_localization_region is not None:
        if not REGION.fullmatch(data_localization_region):
            raise ValueError("data_localization_region must be a two-letter ISO country code, e.g. DE")
        body["data_localization_region"] = data_localization_region
    return GraphRequest("POST", f"/{_graph_id('phone_number_id', phone_number_id)}/register", json=body)


def set_two_step_pin(phone_number_id: str, pin: SecretStr) -> GraphRequest:
    """POST /{phone-number-id} {"pin": "NNNNNN"} (OAS updatePhoneNumberStatus). 2FA cannot be turned off."""
    path = f"/{_graph_id('phone_number_id', phone_number_id)}"
    return GraphRequest("POST", path, json={"pin": check_pin(pin)})


def list_templates(
    waba_id: str,
    *,
    name: str | None = None,
    status: Sequence[str] | None = None,
    category: str | None = None,
    language: str | None = None,
    since: int | None = None,
    until: int | None = None,
    fields: Sequence[str] | None = None,
    limit: int | None = None,
    after: str | None = None,
) -> GraphRequest:
    """GET /{waba-id}/message_templates with filters (OAS declares only `name`)."""
    params: dict[str, str | SecretStr] = {"fields": _fields(fields or DEFAULT_TEMPLATE_FIELDS)}
    if name is not None:
        params["name"] = _text("name", name)
    if status is not None:
        if isinstance(status, str) or not status or not set(status) <= TEMPLATE_STATUSES:
            raise ValueError(f"status must be a non-empty sequence of {sorted(TEMPLATE_STATUSES)}")
        params["status"] = ",".join(status)
    if category is not None:
        params["category"] = _text("category", category)
    if language is not None:
        params["language"] = _text("language", language)
    for key, stamp in (("since", since), ("until", until)):
        if stamp is not None:
            if isinstance(stamp, bool) or not isinstance(stamp, int) or stamp < 0:
                raise ValueError(f"{key} must be a unix time in seconds")
            params[key] = str(stamp)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("limit must be a positive integer")
        params["limit"] = str(limit)
    if after:
        params["after"] = after
    return GraphRequest("GET", f"/{_graph_id('waba_id', waba_id)}/message_templates", params)


def get_template(template_id: str, fields: Sequence[str] | None = None) -> GraphRequest:
    """GET /{template-id} (OAS getTemplateByIdDefaultFields)."""
    params = {"fields": _fields(fields or DEFAULT_TEMPLATE_FIELDS)}
    return GraphRequest("GET", f"/{_graph_id('template_id', template_id)}", params)


def delete_template_by_name(waba_id: str, name: str) -> GraphRequest:
    """DELETE /{waba-id}/message_templates?name= : removes every language of that name."""
    path = f"/{_graph_id('waba_id', waba_id)}/message_templates"
    return GraphRequest("DELETE", path, {"name": _text("name", name)})


def delete_template(waba_id: str, hsm_id: str, name: str) -> GraphRequest:
    """DELETE /{waba-id}/message_templates?hsm_id=&name= : removes only that template id."""
    params = {"hsm_id": _graph_id("hsm_id", hsm_id), "name": _text("name", name)}
    return GraphRequest("DELETE", f"/{_graph_id('waba_id', waba_id)}/message_templates", params)


def list_subscribed_apps(waba_id: str) -> GraphRequest:
    """GET /{waba-id}/subscribed_apps (OAS getAllSubscriptionsForAWaba): shows webhook overrides."""
    return GraphRequest("GET", f"/{_graph_id('waba_id', waba_id)}/subscribed_apps")


def subscribe_app(
    waba_id: str, override_callback_uri: str | None = None, verify_token: SecretStr | None = None
) -> GraphRequest:
    """POST /{waba-id}/subscribed_apps (OAS subscribeToWabaWebhooks); an override needs its verify token."""
    if (override_callback_uri is None) != (verify_token is None):
        raise ValueError("override_callback_uri and verify_token must be given together")
    body: dict[str, Any] | None = None
    if override_callback_uri is not None and verify_token is not None:
        if len(_text("override_callback_uri", override_callback_uri)) > MAX_OVERRIDE_URI:
            raise ValueError(f"override_callback_uri must be at most {MAX_OVERRIDE_URI} characters")
        if not isinstance(verify_token, SecretStr) or not verify_token.get_secret_value():
            raise ValueError("verify_token must be a non-empty SecretStr")
        body = {"override_callback_uri": override_callback_uri, "verify_token": verify_token}
    return GraphRequest("POST", f"/{_graph_id('waba_id', waba_id)}/subscribed_apps", json=body)


def unsubscribe_app(waba_id: str) -> GraphRequest:
    """DELETE /{waba-id}/subscribed_apps (OAS unsubscribeFromWabaWebhooks): also drops the WABA override."""
    return GraphRequest("DELETE", f"/{_graph_id('waba_id', waba_id)}/subscribed_apps")


def list_app_subscriptions(app_id: str) -> GraphRequest:
    """GET /{app-id}/subscriptions (not in OAS; needs an app access token): the app's own webhook
    callback per object, as the App Dashboard's Webhooks page sets it."""
    return GraphRequest("GET", f"/{_graph_id('app_id', app_id)}/subscriptions")


def debug_token(input_token: SecretStr) -> GraphRequest:
    """GET /debug_token?input_token= (not in OAS). The token rides in the query: Meta offers no other way."""
    if not isinstance(input_token, SecretStr) or not input_token.get_secret_value():
        raise ValueError("input_token must be a non-empty SecretStr")
    return GraphRequest("GET", "/debug_token", {"input_token": input_token})


def generate_system_user_token(
    system_user_id: str, *, app_id: str, scopes: Sequence[str], expires_in_60_days: bool = True
) -> GraphRequest:
    """POST /{system-user-id}/access_tokens (not in OAS); Meta also requires appsecret_proof."""
    if isinstance(scopes, str) or not scopes or not all(SCOPE.fullmatch(s) for s in scopes):
        raise ValueError("scopes must be a non-empty sequence of permission names")
    form = {
        "business_app": _graph_id("app_id", app_id),
        "scope": ",".join(scopes),
        "set_token_expires_in_60_days": "true" if expires_in_60_days else "false",
    }
    return GraphRequest("POST", f"/{_graph_id('system_user_id', system_user_id)}/access_tokens", form=form)


def revoke_system_user_tokens(system_user_id: str) -> GraphRequest:
    """DELETE /{system-user-id}/access_tokens (not in OAS; semantics for system users unconfirmed)."""
    return GraphRequest("DELETE", f"/{_graph_id('system_user_id', system_user_id)}/access_tokens")


def revoke_system_user_token(system_user_id: str, token: SecretStr) -> GraphRequest:
    """DELETE /{system-user-id}/access_tokens with `revoke_token` in the form body: one token, not all.

    UNCONFIRMED at Meta (reference section 10): the simulator implements it; a flow confirms the outcome
    with debug_token and the runbook names the Business Settings fallback.
    """
    if not isinstance(token, SecretStr) or not token.get_secret_value():
        raise ValueError("token must be a non-empty SecretStr")
    path = f"/{_graph_id('system_user_id', system_user_id)}/access_tokens"
    return GraphRequest("DELETE", path, form={"revoke_token": token})


def business_user_setting_logs(business_user_id: str, after: str | None = None) -> GraphRequest:
    """GET /{business-user-id}/businesssettinglogs (CG BusinessUser.json; not in OAS): when a person was
    added and what changed, each entry {actor, event_object, event_time, event_type, extra_data}."""
    params: dict[str, str | SecretStr] = {"fields": "event_time,event_type,actor,event_object"}
    if after:
        params["after"] = after
    return GraphRequest(
        "GET", f"/{_graph_id('business_user_id', business_user_id)}/businesssettinglogs", params
    )


def list_business_users(business_id: str, after: str | None = None) -> GraphRequest:
    """GET /{business-id}/business_users (not in OAS)."""
    params: dict[str, str | SecretStr] = {"fields": _fields(BUSINESS_USER_FIELDS)}
    if after:
        params["after"] = after
    return GraphRequest("GET", f"/{_graph_id('business_id', business_id)}/business_users", params)


def list_system_users(business_id: str, after: str | None = None) -> GraphRequest:
    """GET /{business-id}/system_users (not in OAS)."""
    params: dict[str, str | SecretStr] = {"fields": _fields(SYSTEM_USER_FIELDS)}
    if after:
        params["after"] = after
    return GraphRequest("GET", f"/{_graph_id('business_id', business_id)}/system_users", params)


def remove_business_user(business_user_id: str) -> GraphRequest:
    """DELETE /{business-user-id} (not in OAS)."""
    return GraphRequest("DELETE", f"/{_graph_id('business_user_id', business_user_id)}")


def list_assigned_users(waba_id: str, business_id: str, after: str | None = None) -> GraphRequest:
    """GET /{waba-id}/assigned_users?business= (OAS getAssignedUsers; `business` is required)."""
    params: dict[str, str | SecretStr] = {
        "business": _graph_id("business_id", business_id),
        "fields": _fields(ASSIGNED_USER_FIELDS),
    }
    if after:
        params["after"] = after
    return GraphRequest("GET", f"/{_graph_id('waba_id', waba_id)}/assigned_users", params)


def remove_assigned_user(waba_id: str, user_id: str) -> GraphRequest:
    """DELETE /{waba-id}/assigned_users with `user` as a form body (OAS removeAssignedUser, quirk 5)."""
    form = {"user": _graph_id("user_id", user_id)}
    return GraphRequest("DELETE", f"/{_graph_id('waba_id', waba_id)}/assigned_users", form=form)


def secret_values(req: GraphRequest) -> tuple[str, ...]:
    """The plain values of the SecretStr fields of a request (PIN, verify token, input token)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    for part in (dict(req.params), dict(req.json or {}), dict(req.form or {})):
        walk(part)
    return tuple(found)
