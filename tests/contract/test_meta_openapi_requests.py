"""Every request GraphClient builds for an operation in Meta's OpenAPI spec validates against it.

The requests are the client's real ones, captured through respx; the canned answers are checked too,
so the routes here cannot drift from Meta's shapes. Calls the spec does not describe are listed at
the end, pinned to `operation_for() is None`, so the coverage gap stays visible.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from tests.support.meta_openapi import (
    AmbiguousPath,
    NotInSpec,
    operation_for,
    validate_request,
    validate_response,
)
from waguard.meta.client import GraphClient
from waguard.meta.ledger import RegistrationLedger

BASE = "https://graph.test"
PN, WABA, BUSINESS, TEMPLATE, USER = "106853218861309", "3000000001", "2000000001", "9000000001", "7000000001"
OK = {"success": True}
PHONE = {
    "id": PN,
    "display_phone_number": "+1 555-555-5555",
    "verified_name": "Jaspers Market",
    "quality_rating": "GREEN",
}
PHONE_IN_LIST = {**PHONE, "status": "LINKED"}

Call = Callable[[GraphClient], Awaitable[Any]]

# (label, client call, method, path without version, node hint for a colliding path, answer, operationId)
IN_SPEC: list[tuple[str, Call, str, str, str | None, Any, str]] = [
    (
        "deregister",
        lambda c: c.deregister_phone_number(PN),
        "POST",
        f"/{PN}/deregister",
        None,
        OK,
        "deregisterPhoneNumber",
    ),
    (
        "register",
        lambda c: c.register_phone_number(PN, SecretStr("123456")),
        "POST",
        f"/{PN}/register",
        None,
        OK,
        "registerWhatsAppBusinessPhoneNumber",
    ),
    (
        "register in region",
        lambda c: c.register_phone_number(PN, SecretStr("123456"), "DE"),
        "POST",
        f"/{PN}/register",
        None,
        OK,
        "registerWhatsAppBusinessPhoneNumber",
    ),
    (
        "set two-step pin",
        lambda c: c.set_two_step_pin(PN, SecretStr("654321")),
        "POST",
        f"/{PN}",
        "phone_number",
        OK,
        "updatePhoneNumberStatus",
    ),
    (
        "get phone number",
        lambda c: c.get_phone_number(PN),
        "GET",
        f"/{PN}",
        "phone_number",
        PHONE,
        "getPhoneNumberById",
    ),
    (
        "list phone numbers",
        lambda c: c.list_phone_numbers(WABA),
        "GET",
        f"/{WABA}/phone_numbers",
        None,
        {"data": [PHONE_IN_LIST]},
        "getWhatsAppBusinessAccountPhoneNumbers",
    ),
    (
        "list templates",
        lambda c: c.list_templates(WABA, name="promo", status=["APPROVED"], limit=50),
        "GET",
        f"/{WABA}/message_templates",
        None,
        {"data": [{"id": TEMPLATE, "name": "promo", "status": "APPROVED"}]},
        "getTemplateByNameDefaultFields",
    ),
    (
        "get template",
        lambda c: c.get_template(TEMPLATE),
        "GET",
        f"/{TEMPLATE}",
        "template",
        {"id": TEMPLATE, "name": "promo", "status": "APPROVED", "category": "MARKETING", "language": "en_US"},
        "getTemplateByIdDefaultFields",
    ),
    (
        "delete template by name",
        lambda c: c.delete_template_by_name(WABA, "promo"),
        "DELETE",
        f"/{WABA}/message_templates",
        None,
        OK,
        "deleteTemplateByName",
    ),
    (
        "delete template by id",
        lambda c: c.delete_template(WABA, TEMPLATE, "promo"),
        "DELETE",
        f"/{WABA}/message_templates",
        None,
        OK,
        "deleteTemplateByName",
    ),
    (
        "list subscribed apps",
        lambda c: c.list_subscribed_apps(WABA),
        "GET",
        f"/{WABA}/subscribed_apps",
        None,
        {"data": [{"whatsapp_business_api_data": {"id": "1000000001", "name": "waguard"}}]},
        "getAllSubscriptionsForAWaba",
    ),
    (
        "subscribe app",
        lambda c: c.subscribe_app(WABA),
        "POST",
        f"/{WABA}/subscribed_apps",
        None,
        OK,
        "subscribeToWabaWebhooks",
    ),
    (
        "subscribe app with override",
        lambda c: c.subscribe_app(WABA, "https://hooks.example/wa", SecretStr("verify-me")),
        "POST",
        f"/{WABA}/subscribed_apps",
        None,
        OK,
        "subscribeToWabaWebhooks",
    ),
    (
        "unsubscribe app",
        lambda c: c.unsubscribe_app(WABA),
        "DELETE",
        f"/{WABA}/subscribed_apps",
        None,
        OK,
        "unsubscribeFromWabaWebhooks",
    ),
    (
        "list assigned users",
        lambda c: c.list_assigned_users(WABA, BUSINESS),
        "GET",
        f"/{WABA}/assigned_users",
        None,
        {"data": [{"id": USER, "name": "Eve"}]},
        "getAssignedUsers",
    ),
    (
        "remove assigned user",
        lambda c: c.remove_assigned_user(WABA, USER),
        "DELETE",
        f"/{WABA}/assigned_users",
        None,
        OK,
        "removeAssignedUser",
    ),
]

# Calls Meta's spec does not describe (reference meta-graph-api.md section 8): tested with respx only.
NOT_IN_SPEC: list[tuple[str, Call, str, str, str | None, Any]] = [
    (
        "debug_token",
        lambda c: c.debug_token(SecretStr("EAAtoken")),
        "GET",
        "/debug_token",
        None,
        {"data": {"is_valid": True}},
    ),
    (
        "generate system-user token",
        lambda c: c.generate_system_user_token(
            "444", app_id="1000000001", scopes=["whatsapp_business_management"]
        ),
        "POST",
        "/444/access_tokens",
        None,
        {"access_token": "EAAnew"},
    ),
    (
        "revoke system-user tokens",
        lambda c: c.revoke_system_user_tokens("444"),
        "DELETE",
        "/444/access_tokens",
        None,
        OK,
    ),
    (
        "list business users",
        lambda c: c.list_business_users(BUSINESS),
        "GET",
        f"/{BUSINESS}/business_users",
        None,
        {"data": []},
    ),
    (
        "list system users",
        lambda c: c.list_system_users(BUSINESS),
        "GET",
        f"/{BUSINESS}/system_users",
        None,
        {"data": []},
    ),
    (
        "remove business user",
        lambda c: c.remove_business_user(USER),
        "DELETE",
        f"/{USER}",
        "business_user",
        OK,
    ),
]


@pytest.fixture
async def capture(tmp_path: Path) -> AsyncIterator[Callable[[Call, str, str, Any], Awaitable[httpx.Request]]]:
    """Run one client call against a single respx route and hand back the request it sent."""
    clients: list[GraphClient] = []

    async def run(call: Call, method: str, path: str, answer: Any) -> httpx.Request:
        router = respx.Router(base_url=f"{BASE}/v23.0")
        route = router.route(method=method, path=path).respond(json=answer)
        client = GraphClient(
            base_url=BASE, version="v23.0", token=SecretStr("EAAB-system-user-token"),
            app_secret=SecretStr("app-secret-1"), transport=httpx.MockTransport(router.async_handler),
            ledger=RegistrationLedger(tmp_path / "ledger.sqlite3"),
        )  # fmt: skip
        clients.append(client)
        await call(client)
        assert route.call_count == 1
        return route.calls.last.request

    yield run
    for client in clients:
        await client.aclose()


@pytest.mark.parametrize(
    ("label", "call", "method", "path", "node", "answer", "op"), IN_SPEC, ids=[c[0] for c in IN_SPEC]
)
async def test_client_requests_validate_against_metas_spec(
    capture: Any, label: str, call: Call, method: str, path: str, node: str | None, answer: Any, op: str
) -> None:
    request = await capture(call, method, path, answer)
    assert operation_for(method, path, node=node) == op
    assert validate_request(request, node=node) == []
    # The canned answer is spec-shaped too, so these routes model Meta faithfully.
    assert validate_response(request, httpx.Response(200, json=answer), node=node) == []


def _by_hand(method: str, path: str, **kwargs: Any) -> httpx.Request:
    headers = {"Authorization": "Bearer EAAB-system-user-token", "User-Agent": "waguard/0.1.0"}
    headers.update(kwargs.pop("headers", {}))
    return httpx.Request(method, f"{BASE}/v23.0{path}", headers=headers, **kwargs)


@pytest.mark.parametrize(
    ("request_", "node", "expected"),
    [
        (_by_hand("POST", f"/{PN}/register", json={"messaging_product": "whatsapp", "pin": "12345"}), None,
         "request.body.pin: pattern"),
        (_by_hand("POST", f"/{PN}/register", json={"pin": "123456"}), None, "messaging_product"),
        (_by_hand("POST", f"/{PN}", json={"pin": 654321}), "phone_number", "request.body.pin: type"),
        (_by_hand("POST", f"/{PN}/deregister", headers={"User-Agent": "Python-urllib/3.11"}), None,
         "request.header.User-Agent: pattern"),
        (httpx.Request("POST", f"{BASE}/v23.0/{PN}/deregister"), None, "security"),
        (_by_hand("POST", "/abc/deregister"), None, None),  # not a Graph id: no operation at all
        (_by_hand("GET", f"/{WABA}/assigned_users"), None, "request.query.business"),
        (_by_hand("DELETE", f"/{WABA}/assigned_users", params={"user": USER}), None, "request body"),
    ],
)  # fmt: skip
def test_the_validator_can_fail(request_: httpx.Request, node: str | None, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(NotInSpec):
            validate_request(request_, node=node)
        return
    violations = validate_request(request_, node=node)
    assert any(expected in v or expected.replace(" ", ".") in v for v in violations), violations
    assert not any("12345" in v or "654321" in v for v in violations)  # values never reported


def test_response_violations_are_reported() -> None:
    request = _by_hand("POST", f"/{PN}/deregister")
    assert validate_response(request, httpx.Response(200, json={"success": "yes"})) == [
        "response.body.success: type 'boolean'"
    ]
    assert (
        validate_response(
            request, httpx.Response(400, json={"error": {"message": "x", "type": "T", "code": 100}})
        )
        == []
    )
    assert any("required" in v for v in validate_response(request, httpx.Response(400, json={"error": {}})))


@pytest.mark.parametrize(
    ("label", "call", "method", "path", "node", "answer"), NOT_IN_SPEC, ids=[c[0] for c in NOT_IN_SPEC]
)
async def test_calls_outside_metas_spec_are_known(
    capture: Any, label: str, call: Call, method: str, path: str, node: str | None, answer: Any
) -> None:
    request = await capture(call, method, path, answer)
    assert operation_for(method, path, node=node) is None
    with pytest.raises(NotInSpec):
        validate_request(request, node=node)


def test_colliding_paths_need_a_node_hint() -> None:
    with pytest.raises(AmbiguousPath, match="node="):
        operation_for("GET", f"/{PN}")
    with pytest.raises(AmbiguousPath):
        operation_for("DELETE", f"/{USER}")  # deleteGroup, deleteMedia, deleteFlow... but not a business user
    assert operation_for("GET", f"/v23.0/{TEMPLATE}", node="template") == "getTemplateByIdDefaultFields"
    assert (
        operation_for("POST", f"/{WABA}", node="WABA-ID") == "updateWhatsAppBusinessAccount"
    )  # raw param name
