"""Webhook subscriptions of a WABA and of the app, and plain reads of the app, business and WABA nodes.

GET /{waba}/subscribed_apps answers Meta's documented shape, the app nested under
`whatsapp_business_api_data` (OAS's schema shows a flat `{id, name}` but allows other properties),
plus `override_callback_uri` when the app has a WABA-level override.

POST subscribes the calling app (the app of the token); `override_callback_uri` (at most 200
characters) needs its `verify_token`. When the seed's `verify_override_callbacks` is on, Meta's
handshake runs first: a GET to the URI that must echo `hub.challenge`, else code 2200.
DELETE unsubscribes the calling app, which also drops its override; it succeeds when the app was not
subscribed (a choice: Meta does not say).
"""

from __future__ import annotations

from typing import Any

from waguard.meta.simulator import envelope as E
from waguard.meta.simulator import rules
from waguard.meta.simulator.calls import NODE, Answer, Call, Operation
from waguard.meta.simulator.seed import SubscribedAppSeed
from waguard.meta.simulator.webhooks import verify_callback

MAX_OVERRIDE_URI = 200
ALL = E.ALL_STATUSES


def _app_id(call: Call) -> str:
    return call.token.app_id or call.sim.app.id


async def list_subscribed(call: Call) -> Answer:
    """GET /{waba-id}/subscribed_apps."""
    with call.sim.lock:
        rows: list[dict[str, Any]] = []
        for sub in call.sim.subscriptions[call.object_id].values():
            link = f"https://www.facebook.com/games/?app_id={sub.app_id}"
            row: dict[str, Any] = {
                "whatsapp_business_api_data": {"id": sub.app_id, "link": link, "name": sub.app_name}
            }
            if sub.override_callback_uri:
                row["override_callback_uri"] = sub.override_callback_uri
            rows.append(row)
    return Answer({"data": rows})


async def subscribe(call: Call) -> Answer:
    """POST /{waba-id}/subscribed_apps [override_callback_uri, verify_token]."""
    override = call.param("override_callback_uri")
    verify = call.param("verify_token")
    if override is not None:
        override = str(override)
        if len(override) > MAX_OVERRIDE_URI:
            raise E.invalid_param(
                f"(#100) Param override_callback_uri must be at most {MAX_OVERRIDE_URI} chars",
                "Callback URL too long", "The override callback URL is longer than 200 characters.",
            )
        if not override.startswith(("https://", "http://")):
            raise E.invalid_param("(#100) Param override_callback_uri must be a valid URL")
        if verify is None:
            raise E.missing_param("verify_token")
        if call.sim.app.verify_override_callbacks:
            problem = await verify_callback(override, str(verify))
            if problem:
                raise E.callback_verification_failed(problem)
    app_id = _app_id(call)
    with call.sim.lock:
        sim = call.sim
        sim.subscriptions[call.object_id][app_id] = SubscribedAppSeed(
            waba_id=call.object_id, app_id=app_id, app_name=sim.app.name if app_id == sim.app.id else app_id,
            override_callback_uri=override,
        )  # fmt: skip
        key = f"waba:{call.object_id}:{app_id}"
        if override is not None:
            sim.verify_tokens[key] = str(verify)
        else:
            sim.verify_tokens.pop(key, None)
    return Answer({"success": True})


async def unsubscribe(call: Call) -> Answer:
    """DELETE /{waba-id}/subscribed_apps."""
    app_id = _app_id(call)
    with call.sim.lock:
        call.sim.subscriptions[call.object_id].pop(app_id, None)
        call.sim.verify_tokens.pop(f"waba:{call.object_id}:{app_id}", None)
    return Answer({"success": True})


async def get_waba(call: Call) -> Answer:
    """GET /{waba-id}."""
    sim = call.sim
    with sim.lock:
        w = sim.wabas[call.object_id]
        node = {"id": w.id, "name": w.name, "currency": w.currency, "timezone_id": w.timezone_id,
                "message_template_namespace": f"ns_{w.id}", "account_review_status": "APPROVED",
                "business_verification_status": "VERIFIED", "ownership_type": "SELF_OWNED",
                "owner_business_info": {"id": w.business_id or sim.business.id,
                                        "name": sim.business_of("waba", w.id).name}}  # fmt: skip
    default = ("id", "name", "currency", "timezone_id", "message_template_namespace")
    return Answer(rules.select_fields(node, call.param("fields"), default, "WhatsAppBusinessAccount"))


async def get_business(call: Call) -> Answer:
    """GET /{business-id}."""
    business = call.sim.businesses[call.object_id]
    node = {"id": business.id, "name": business.name, "verification_status": "verified"}
    return Answer(rules.select_fields(node, call.param("fields"), ("id", "name"), "Business"))


async def get_app(call: Call) -> Answer:
    """GET /{app-id}."""
    app = call.sim.app
    node = {"id": app.id, "name": app.name, "link": f"https://www.facebook.com/games/?app_id={app.id}"}
    return Answer(rules.select_fields(node, call.param("fields"), ("id", "name", "link"), "Application"))


async def app_subscriptions(call: Call) -> Answer:
    """GET /{app-id}/subscriptions: the dashboard's callback for WhatsApp objects, when one is set."""
    app = call.sim.app
    if not app.callback_url:
        return Answer({"data": []})
    fields = [{"name": f, "version": "v23.0"} for f in SUBSCRIBED_FIELDS]
    return Answer({"data": [{"object": "whatsapp_business_account", "callback_url": app.callback_url,
                             "active": True, "fields": fields}]})


SUBSCRIBED_FIELDS = ("account_update", "security", "message_template_status_update")

OPERATIONS = {
    ("waba", "subscribed_apps", "GET"): Operation("waba.subscribed_apps.list", list_subscribed, ALL),
    ("waba", "subscribed_apps", "POST"): Operation("waba.subscribed_apps.subscribe", subscribe, ALL),
    ("waba", "subscribed_apps", "DELETE"): Operation("waba.subscribed_apps.unsubscribe", unsubscribe, ALL),
    ("waba", NODE, "GET"): Operation("waba.get", get_waba, ALL),
    ("business", NODE, "GET"): Operation(
        "business.get", get_business, E.ONLY_200, scope="business_management"),
    ("app", NODE, "GET"): Operation("app.get", get_app, scope=None, app_token=True),
    ("app", "subscriptions", "GET"): Operation("app.subscriptions", app_subscriptions, scope=None,
                                               app_token=True),
}
