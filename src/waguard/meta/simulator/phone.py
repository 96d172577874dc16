"""Phone-number operations: read, list, register, deregister, two-step PIN, number-level override.

Choices where Meta's behaviour is not documented (reference meta-graph-api.md section 10):
- register and deregister share ONE budget per number (10 requests per moving 72 h). Meta states
  the limit for both calls without saying whether they are counted apart; sharing is the stricter
  reading. Every request counts, including refused and invalid ones, because Meta counts requests.
- deregister of a number that is not registered answers the OAS example error (100, subcode 2207051).
- deregister sets `status` DISCONNECTED and `platform_type` NOT_APPLICABLE; register sets CONNECTED
  and CLOUD_API. Register of an already registered number succeeds (it is how a number re-registers
  with a known PIN). A number without a two-step PIN takes the PIN given at registration.
- GET /{waba}/phone_numbers reports `status` with the values the OAS gives that operation (PENDING,
  LINKED, UNLINKED, DELETED, MIGRATED, BANNED, RESTRICTED; its own example shows LINKED), while
  GET /{phone-number-id} reports the connection status (CONNECTED, ...) as Meta's guides show. The
  mapping is `EDGE_STATUS`.
"""

from __future__ import annotations

import json
from typing import Any

from waguard.meta.simulator import envelope as E
from waguard.meta.simulator import rules
from waguard.meta.simulator.calls import NODE, Answer, Call, Operation
from waguard.meta.simulator.seed import PhoneNumberSeed
from waguard.meta.simulator.state import SimState
from waguard.meta.simulator.webhooks import verify_callback

NODE_TYPE = "WhatsAppBusinessPhoneNumber"
NODE_DEFAULT = ("id", "display_phone_number", "verified_name", "quality_rating")  # OAS getPhoneNumberById
EDGE_DEFAULT = ("id", "display_phone_number", "verified_name", "status", "quality_rating",
                "code_verification_status", "platform_type")  # fmt: skip
EDGE_STATUS = {
    "CONNECTED": "LINKED", "RATE_LIMITED": "LINKED", "FLAGGED": "RESTRICTED", "RESTRICTED": "RESTRICTED",
    "DISCONNECTED": "UNLINKED", "PENDING": "PENDING", "UNVERIFIED": "PENDING", "BANNED": "BANNED",
    "MIGRATED": "MIGRATED", "DELETED": "DELETED",
}  # fmt: skip
REGIONS = frozenset({"AE", "AU", "BH", "BR", "CA", "CH", "DE", "GB", "ID", "IN", "JP", "KR", "SG", "ZA"})
MAX_OVERRIDE_URI = 200
ALL = E.ALL_STATUSES


def can_send(n: PhoneNumberSeed) -> str:
    """health_status.can_send_message of a number: AVAILABLE, LIMITED or BLOCKED."""
    if not n.registered or n.status in ("BANNED", "DISCONNECTED", "DELETED", "PENDING", "UNVERIFIED"):
        return "BLOCKED"
    if n.status == "CONNECTED" and n.quality_rating != "RED":
        return "AVAILABLE"
    return "LIMITED"


def number_fields(sim: SimState, n: PhoneNumberSeed, *, edge: bool = False) -> dict[str, Any]:
    """Every readable field of a number (values None are left out of answers)."""
    can = can_send(n)
    waba_override = next((s.override_callback_uri for s in sim.subscriptions.get(n.waba_id, {}).values()
                          if s.app_id == sim.app.id), None)  # fmt: skip
    hooks = {"application": sim.app.callback_url, "whatsapp_business_account": waba_override,
             "phone_number": n.override_callback_uri}  # fmt: skip
    return {
        "id": n.id,
        "display_phone_number": n.display_phone_number,
        "verified_name": n.verified_name,
        "status": EDGE_STATUS[n.status] if edge else n.status,
        "quality_rating": n.quality_rating,
        "code_verification_status": n.code_verification_status,
        "name_status": n.name_status,
        "new_name_status": "NONE",
        "platform_type": n.platform_type,
        "host_platform": n.platform_type,
        "throughput": {"level": n.throughput_level},
        "account_mode": n.account_mode,
        "is_official_business_account": n.is_official_business_account,
        "messaging_limit_tier": n.messaging_limit_tier,
        "whatsapp_business_manager_messaging_limit": n.messaging_limit_tier,
        "country_code": n.country_code,
        "country_dial_code": n.country_dial_code,
        "is_pin_enabled": n.two_step_pin is not None,
        "webhook_configuration": {k: v for k, v in hooks.items() if v},
        "health_status": {
            "can_send_message": can,
            "entities": [
                {"entity_type": "PHONE_NUMBER", "id": n.id, "can_send_message": can},
                {"entity_type": "WABA", "id": n.waba_id, "can_send_message": "AVAILABLE"},
                {"entity_type": "BUSINESS", "id": sim.business_of("waba", n.waba_id).id,
                 "can_send_message": "AVAILABLE"},
                {"entity_type": "APP", "id": sim.app.id, "can_send_message": "AVAILABLE"},
            ],
        },
    }


async def get_number(call: Call) -> Answer:
    """GET /{phone-number-id}?fields=."""
    with call.sim.lock:
        node = number_fields(call.sim, call.sim.numbers[call.object_id])
    return Answer(rules.select_fields(node, call.param("fields"), NODE_DEFAULT, NODE_TYPE))


async def list_numbers(call: Call) -> Answer:
    """GET /{waba-id}/phone_numbers (`filtering` and `sort` are accepted and not applied)."""
    with call.sim.lock:
        rows = [rules.select_fields(number_fields(call.sim, n, edge=True), call.param("fields"), EDGE_DEFAULT,
                                    NODE_TYPE)
                for n in call.sim.numbers.values() if n.waba_id == call.object_id]  # fmt: skip
    return Answer(rules.paginate(rows, call.params, call.page_url))


def _registration_budget(call: Call) -> None:
    """Count this register/deregister request; 133016 when it is past the 72 h budget."""
    count = call.sim.count_registration(call.object_id, call.now)
    if rules.registration_refused(count, call.sim.limits.registration_attempts):
        raise E.registration_locked()


async def deregister(call: Call) -> Answer:
    """POST /{phone-number-id}/deregister."""
    _registration_budget(call)
    with call.sim.lock:
        n = call.sim.numbers[call.object_id]
        if not n.registered:
            raise E.not_registered()
        n.registered, n.platform_type, n.status = False, "NOT_APPLICABLE", "DISCONNECTED"
    return Answer({"success": True})


async def register(call: Call) -> Answer:
    """POST /{phone-number-id}/register {messaging_product: whatsapp, pin: "NNNNNN"}."""
    _registration_budget(call)
    product = call.required("messaging_product")
    if product != "whatsapp":
        raise E.invalid_param("(#100) Param messaging_product must be one of {whatsapp}")
    pin = call.required("pin")
    if not rules.valid_pin(pin):
        raise E.pin_format()
    region = call.param("data_localization_region")
    if region is not None and region not in REGIONS:
        allowed = ", ".join(sorted(REGIONS))
        raise E.invalid_param(f"(#100) Param data_localization_region must be one of {{{allowed}}}")
    with call.sim.lock:
        n = call.sim.numbers[call.object_id]
        if n.two_step_pin is not None and n.two_step_pin != pin:
            raise E.pin_mismatch()
        n.two_step_pin = n.two_step_pin or pin
        n.registered, n.platform_type, n.status = True, "CLOUD_API", "CONNECTED"
    return Answer({"success": True})


def _object(value: Any, name: str) -> dict[str, Any]:
    """A JSON object parameter, given as an object (JSON body) or a JSON string (form or query)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise E.invalid_param(f"(#100) Param {name} must be a JSON object") from None
    if not isinstance(value, dict):
        raise E.invalid_param(f"(#100) Param {name} must be a JSON object")
    return value


async def update_number(call: Call) -> Answer:
    """POST /{phone-number-id}: {"pin": "NNNNNN"} sets the two-step PIN; webhook_configuration sets
    (or, with an empty override_callback_uri, removes) the number-level webhook override.

    Two-step verification cannot be turned off through the API: there is no way to clear the PIN.
    """
    pin = call.param("pin")
    hooks = call.param("webhook_configuration")
    if pin is None and hooks is None:
        raise E.invalid_param("(#100) Invalid parameter", "Nothing to update",
                              "Give pin or webhook_configuration.")  # fmt: skip
    if pin is not None and not rules.valid_pin(pin):
        raise E.pin_format()
    override: str | None = None
    if hooks is not None:
        config = _object(hooks, "webhook_configuration")
        override = str(config.get("override_callback_uri") or "")
        if len(override) > MAX_OVERRIDE_URI:
            limit = MAX_OVERRIDE_URI
            raise E.invalid_param(f"(#100) Param override_callback_uri must be at most {limit} chars")
        verify = config.get("verify_token")
        if override and not verify:
            raise E.missing_param("verify_token")
        if override and call.sim.app.verify_override_callbacks:
            problem = await verify_callback(override, str(verify))
            if problem:
                raise E.callback_verification_failed(problem)
        if override:
            with call.sim.lock:
                call.sim.verify_tokens[f"number:{call.object_id}"] = str(verify)
    with call.sim.lock:
        n = call.sim.numbers[call.object_id]
        if pin is not None:
            n.two_step_pin = pin
        if hooks is not None:
            n.override_callback_uri = override or None
    return Answer({"success": True})


OPERATIONS = {
    ("phone_number", NODE, "GET"): Operation("phone_number.get", get_number, ALL),
    ("phone_number", NODE, "POST"): Operation("phone_number.update", update_number, ALL),
    ("phone_number", "register", "POST"): Operation("phone_number.register", register, ALL),
    ("phone_number", "deregister", "POST"): Operation("phone_number.deregister", deregister, ALL),
    ("waba", "phone_numbers", "GET"): Operation("waba.phone_numbers", list_numbers, ALL),
}
