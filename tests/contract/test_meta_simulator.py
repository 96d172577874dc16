"""The Meta Graph simulator over real HTTP: Meta's rules, its spec, the admin API, faults, webhooks.

Answers of operations Meta's OpenAPI spec covers are checked with `tests.support.meta_openapi`;
the rest is checked against the reference (shared/reference/meta-graph-api.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.fixtures.meta import MetaSim, fresh_demo_seed
from tests.support.meta_openapi import validate_request, validate_response
from waguard.meta.errors import MetaThrottled, MetaUnavailable
from waguard.meta.simulator import create_app, load_seed, message_template_status_update, security
from waguard.meta.simulator.rules import appsecret_proof
from waguard.meta.simulator.seed import LimitsSeed
from waguard.servers import ServedApp

UA = "waguard/0.1.0"  # the spec validates User-Agent against name/X.Y.Z
DEFAULT: Any = object()


def graph(meta_sim: MetaSim, method: str, path: str, *, token: Any = DEFAULT, proof: Any = True,
          params: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:  # fmt: skip
    """One raw Graph call: Bearer token and (by default) a correct appsecret_proof."""
    tok = meta_sim.token.get_secret_value() if token is DEFAULT else token
    headers = {"User-Agent": UA, **({"Authorization": f"Bearer {tok}"} if tok else {})}
    query = dict(params or {})
    if proof is True and tok:
        query["appsecret_proof"] = appsecret_proof(tok, meta_sim.app_secret.get_secret_value())
    elif isinstance(proof, str):
        query["appsecret_proof"] = proof
    return meta_sim.admin.request(method, f"/{meta_sim.version}{path}", params=query, headers=headers, **kwargs)


def error(response: httpx.Response) -> dict[str, Any]:
    """The `error` object of Meta's envelope, checking the envelope's mandatory keys."""
    err = response.json()["error"]
    assert {"message", "type", "code", "fbtrace_id"} <= set(err)
    return dict(err)


# ---- Meta's spec ----------------------------------------------------------------------------------


def test_answers_of_covered_operations_conform_to_metas_spec(meta_sim: MetaSim) -> None:
    waba, pn, pin = meta_sim.waba_id, meta_sim.number_id, meta_sim.pin().get_secret_value()
    steps: list[tuple[str, str, dict[str, Any], str | None, int]] = [
        ("GET", f"/{pn}", {"params": {"fields": "id,display_phone_number,status,name_status"}}, "phone_number", 200),
        ("GET", f"/{pn}", {}, "phone_number", 200),
        ("GET", f"/{waba}/phone_numbers", {}, None, 200),
        ("GET", f"/{waba}/phone_numbers", {"params": {"limit": "1"}}, None, 200),
        ("POST", f"/{pn}/deregister", {}, None, 200),
        ("POST", f"/{pn}/deregister", {}, None, 400),  # not registered any more: 100/2207051
        ("POST", f"/{pn}/register", {"json": {"messaging_product": "whatsapp", "pin": pin}}, None, 200),
        ("POST", f"/{pn}", {"json": {"pin": "246810"}}, "phone_number", 200),
        ("GET", f"/{waba}/message_templates", {"params": {"name": "order_update"}}, None, 200),
        ("GET", "/5000000001", {}, "template", 200),
        ("DELETE", f"/{waba}/message_templates", {"params": {"name": "order_update", "hsm_id": "5000000002"}},
         None, 200),
        ("DELETE", f"/{waba}/message_templates", {"params": {"name": "spring_sale"}}, None, 200),
        ("POST", f"/{waba}/subscribed_apps",
         {"json": {"override_callback_uri": "https://hooks.example/wa", "verify_token": "vt"}}, None, 200),
        ("GET", f"/{waba}/subscribed_apps", {}, None, 200),
        ("DELETE", f"/{waba}/subscribed_apps", {}, None, 200),
        ("GET", f"/{waba}/assigned_users", {"params": {"business": meta_sim.business_id}}, None, 200),
        ("DELETE", f"/{waba}/assigned_users", {"data": {"user": "6000000003"}}, None, 200),
        ("GET", "/999999", {}, "phone_number", 400),  # 100/33
    ]  # fmt: skip
    for method, path, kwargs, node, status in steps:
        response = graph(meta_sim, method, path, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        assert validate_request(response.request, node=node) == [], (method, path)
        assert validate_response(response.request, response, node=node) == [], (method, path)
    revoked = graph(meta_sim, "POST", f"/{pn}/deregister", token="EAAGnotatokenanybodyissued0123")
    assert revoked.status_code == 401 and error(revoked)["code"] == 190
    bad_pin = graph(meta_sim, "POST", f"/{pn}/register", json={"messaging_product": "whatsapp", "pin": "12345"})
    assert validate_request(bad_pin.request) != []  # the request breaks the spec; the answer must not
    for response in (revoked, bad_pin):
        assert response.status_code in (400, 401)
        assert validate_response(response.request, response) == []


# ---- access tokens and appsecret_proof ------------------------------------------------------------


def test_token_problems_answer_metas_codes(meta_sim: MetaSim) -> None:
    path = f"/{meta_sim.number_id}"
    assert error(graph(meta_sim, "GET", path, token=None))["code"] == 104
    unknown = graph(meta_sim, "GET", path, token="EAAGunknown0123456789abcdef")
    assert unknown.status_code == 401 and error(unknown)["code"] == 190
    issued = meta_sim.admin.post("/_sim/tokens", json={"user_id": "6000000001", "lifetime_s": 3600}).json()
    assert graph(meta_sim, "GET", path, token=issued["access_token"]).status_code == 200
    meta_sim.advance(3601)
    expired = error(graph(meta_sim, "GET", path, token=issued["access_token"]))
    assert (expired["code"], expired["error_subcode"]) == (190, 463)
    meta_sim.admin.post("/_sim/tokens/revoke", json={"token_id": meta_sim.token_id}).raise_for_status()
    revoked = error(graph(meta_sim, "GET", path))
    assert (revoked["code"], revoked["error_subcode"]) == (190, 467)


def test_appsecret_proof_is_checked_against_the_current_secret(meta_sim: MetaSim) -> None:
    path = f"/{meta_sim.number_id}"
    assert graph(meta_sim, "GET", path, proof=None).status_code == 200  # switch off: proof optional
    wrong = error(graph(meta_sim, "GET", path, proof="0" * 64))
    assert (wrong["code"], wrong["type"]) == (100, "GraphMethodException")
    assert wrong["message"] == "Invalid appsecret_proof provided in the API argument"
    meta_sim.admin.post("/_sim/app/require-proof", json={"enabled": True}).raise_for_status()
    missing = error(graph(meta_sim, "GET", path, proof=None))
    assert (missing["code"], missing["type"]) == (100, "GraphMethodException")
    old_proof = appsecret_proof(meta_sim.token.get_secret_value(), meta_sim.app_secret.get_secret_value())
    assert graph(meta_sim, "GET", path, proof=old_proof).status_code == 200
    new_secret = meta_sim.admin.post("/_sim/app/reset-secret").json()["app_secret"]
    assert new_secret == meta_sim.app_secret.get_secret_value()
    assert error(graph(meta_sim, "GET", path, proof=old_proof))["message"].startswith("Invalid appsecret_proof")
    assert graph(meta_sim, "GET", path).status_code == 200  # proof under the new secret


def test_debug_token_reports_revocation_and_app_tokens_follow_the_secret(meta_sim: MetaSim) -> None:
    other = meta_sim.admin.post("/_sim/tokens", json={"user_id": "6000000002", "type": "USER"}).json()
    data = graph(meta_sim, "GET", "/debug_token", params={"input_token": other["access_token"]}).json()["data"]
    assert data["is_valid"] is True and data["type"] == "USER" and data["user_id"] == "6000000002"
    assert {"app_id", "application", "expires_at", "data_access_expires_at", "issued_at", "scopes",
            "granular_scopes"} <= set(data)  # fmt: skip
    meta_sim.admin.post("/_sim/tokens/revoke", json={"token_id": other["id"]}).raise_for_status()
    data = graph(meta_sim, "GET", "/debug_token", params={"input_token": other["access_token"]}).json()["data"]
    assert data["is_valid"] is False and data["error"]["code"] == 190
    junk = graph(meta_sim, "GET", "/debug_token", params={"input_token": "not-a-token-at-all"}).json()["data"]
    assert junk["is_valid"] is False
    app_token = f"{meta_sim.app_id}|{meta_sim.app_secret.get_secret_value()}"
    assert graph(meta_sim, "GET", "/debug_token", token=app_token, proof=None,
                 params={"input_token": meta_sim.token.get_secret_value()}).json()["data"]["is_valid"]  # fmt: skip
    meta_sim.admin.post("/_sim/app/reset-secret").raise_for_status()
    stale = graph(meta_sim, "GET", "/debug_token", token=app_token, proof=None, params={"input_token": app_token})
    assert error(stale)["code"] == 190


def test_system_user_tokens_generate_with_proof_and_revoke_together(meta_sim: MetaSim) -> None:
    su, form = meta_sim.system_user_id, {"business_app": meta_sim.app_id, "scope": "whatsapp_business_management",
                                         "set_token_expires_in_60_days": "true"}  # fmt: skip
    assert error(graph(meta_sim, "POST", f"/{su}/access_tokens", proof=None, data=form))["code"] == 100
    assert error(graph(meta_sim, "POST", f"/{su}/access_tokens", data={"scope": "x"}))["code"] == 100
    new = graph(meta_sim, "POST", f"/{su}/access_tokens", data=form).json()["access_token"]
    info = graph(meta_sim, "GET", "/debug_token", params={"input_token": new}).json()["data"]
    assert info["is_valid"] and info["type"] == "SYSTEM_USER" and info["expires_at"] > info["issued_at"]
    assert graph(meta_sim, "DELETE", f"/{su}/access_tokens").json() == {"success": True}
    assert [t["is_valid"] for t in meta_sim.admin.get("/_sim/tokens").json()["data"]] == [False, False]


# ---- phone numbers --------------------------------------------------------------------------------


def test_register_deregister_budget_is_ten_per_72h_and_counts_every_request(meta_sim: MetaSim) -> None:
    pn, pin = meta_sim.number_id, meta_sim.pin().get_secret_value()
    for i in range(10):
        if i % 2 == 0:
            assert graph(meta_sim, "POST", f"/{pn}/deregister").status_code == 200
        else:
            body = {"messaging_product": "whatsapp", "pin": pin if i != 9 else "000000"}
            graph(meta_sim, "POST", f"/{pn}/register", json=body)  # the 10th fails (PIN) and still counts
    for _ in range(2):  # the 11th and later
        locked = error(graph(meta_sim, "POST", f"/{pn}/register", json={"messaging_product": "whatsapp", "pin": pin}))
        assert locked["code"] == 133016
    meta_sim.admin.post("/_sim/clock", json={"advance_s": 72 * 3600}).raise_for_status()
    assert graph(meta_sim, "POST", f"/{pn}/register", json={"messaging_product": "whatsapp", "pin": pin}).json() == {
        "success": True}  # fmt: skip
    assert meta_sim.sim.numbers[pn].registered


@pytest.mark.parametrize("body", [
    {"pin": "123456"}, {"messaging_product": "sms", "pin": "123456"}, {"messaging_product": "whatsapp"},
    {"messaging_product": "whatsapp", "pin": "12345"}, {"messaging_product": "whatsapp", "pin": 123456},
])  # fmt: skip
def test_register_requires_whatsapp_and_a_six_digit_string_pin(meta_sim: MetaSim, body: dict[str, Any]) -> None:
    assert error(graph(meta_sim, "POST", f"/{meta_sim.number_id}/register", json=body))["code"] == 100


def test_register_with_another_pin_is_a_mismatch_and_pin_can_be_changed(meta_sim: MetaSim) -> None:
    pn = meta_sim.number_id
    other = "111111" if meta_sim.pin().get_secret_value() != "111111" else "222222"
    assert error(graph(meta_sim, "POST", f"/{pn}/register", json={"messaging_product": "whatsapp", "pin": other}))[
        "code"] == 133005  # fmt: skip
    for bad in ("12345", "abcdef", 123456):
        assert error(graph(meta_sim, "POST", f"/{pn}", json={"pin": bad}))["code"] == 100
    assert graph(meta_sim, "POST", f"/{pn}", json={"pin": other}).json() == {"success": True}
    assert meta_sim.pin().get_secret_value() == other


def test_unknown_objects_and_edges_answer_graphs_errors(meta_sim: MetaSim) -> None:
    missing = error(graph(meta_sim, "POST", "/123456789/deregister"))
    assert (missing["code"], missing["error_subcode"]) == (100, 33)
    assert "Unsupported post request. Object with ID '123456789' does not exist" in missing["message"]
    assert error(graph(meta_sim, "GET", f"/{meta_sim.waba_id}/nonsense"))["code"] == 100
    assert error(graph(meta_sim, "GET", f"/{meta_sim.number_id}", params={"fields": "id,bogus"}))["code"] == 100
    assert error(graph(meta_sim, "DELETE", f"/{meta_sim.system_user_id}"))["error_subcode"] == 33  # no such DELETE


# ---- templates ------------------------------------------------------------------------------------


def _names(response: httpx.Response) -> list[tuple[str, str]]:
    return [(t["name"], t["language"]) for t in response.json()["data"]]


def test_template_filters(meta_sim: MetaSim) -> None:
    path = f"/{meta_sim.waba_id}/message_templates"
    assert _names(graph(meta_sim, "GET", path, params={"name": "spring_sale"})) == [
        ("spring_sale", "en_US"), ("spring_sale", "de_DE")]  # fmt: skip
    by_comma = graph(meta_sim, "GET", path, params={"status": "DISABLED,PAUSED"})
    by_json = graph(meta_sim, "GET", path, params={"status": '["DISABLED","PAUSED"]'})
    assert _names(by_comma) == _names(by_json) == [("order_update", "pt_BR"), ("winter_newsletter", "fr_FR")]
    assert _names(graph(meta_sim, "GET", path, params={"category": "AUTHENTICATION"})) == [("login_code", "en_US")]
    assert len(_names(graph(meta_sim, "GET", path, params={"language": "en_US"}))) == 4
    recent = graph(meta_sim, "GET", path, params={"since": str(1767225600 + 10 * 86400)})
    assert _names(recent) == [("account_security_notice", "en_US")]
    assert error(graph(meta_sim, "GET", path, params={"status": "SHINY"}))["code"] == 100


def test_template_paging_walks_every_page_without_secrets_in_links(meta_sim: MetaSim) -> None:
    path, seen, after = f"/{meta_sim.waba_id}/message_templates", [], None
    while True:
        page = graph(meta_sim, "GET", path, params={"limit": "3", **({"after": after} if after else {})}).json()
        seen += [t["id"] for t in page["data"]]
        if "next" not in page.get("paging", {}):
            break
        assert "appsecret_proof" not in page["paging"]["next"] and "access_token" not in page["paging"]["next"]
        after = page["paging"]["cursors"]["after"]
    assert seen == [t.id for t in meta_sim.seed.templates]


def test_template_delete_rules(meta_sim: MetaSim) -> None:
    path = f"/{meta_sim.waba_id}/message_templates"
    assert error(graph(meta_sim, "DELETE", path, params={"hsm_id": "5000000001"}))["code"] == 100  # needs name
    assert error(graph(meta_sim, "DELETE", path, params={"name": "no_such_template"}))["code"] == 100
    assert error(graph(meta_sim, "DELETE", path, params={"hsm_id": "5000000005", "name": "order_update"}))[
        "code"] == 100  # fmt: skip  # id and name disagree
    disabled = error(graph(meta_sim, "DELETE", path, params={"name": "winter_newsletter"}))
    assert disabled["code"] == 100 and "5000000007" in meta_sim.sim.templates
    assert graph(meta_sim, "DELETE", path, params={"hsm_id": "5000000002", "name": "order_update"}).json() == {
        "success": True}  # fmt: skip
    assert _names(graph(meta_sim, "GET", path, params={"name": "order_update"})) == [
        ("order_update", "en_US"), ("order_update", "pt_BR")]  # fmt: skip
    assert graph(meta_sim, "DELETE", path, params={"name": "order_update"}).json() == {"success": True}
    assert _names(graph(meta_sim, "GET", path, params={"name": "order_update"})) == []
    assert error(graph(meta_sim, "GET", "/5000000001"))["error_subcode"] == 33


# ---- business users, WABA access, subscriptions ---------------------------------------------------


def test_assigned_users_need_business_and_accept_user_in_query_or_form(meta_sim: MetaSim) -> None:
    path = f"/{meta_sim.waba_id}/assigned_users"
    assert error(graph(meta_sim, "GET", path))["message"] == "(#100) The parameter business is required"
    assert graph(meta_sim, "DELETE", path, params={"user": "6000000003"}).json() == {"success": True}
    assert graph(meta_sim, "DELETE", path, data={"user": "6000000002"}).json() == {"success": True}
    listed = graph(meta_sim, "GET", path, params={"business": meta_sim.business_id}).json()["data"]
    assert [u["id"] for u in listed] == ["6000000001", "7000000001"]


def test_removed_business_user_loses_access(meta_sim: MetaSim) -> None:
    eve = meta_sim.admin.post("/_sim/tokens", json={"user_id": "6000000003", "type": "USER"}).json()["access_token"]
    users = f"/{meta_sim.business_id}/business_users"
    assert graph(meta_sim, "DELETE", "/6000000003", token=eve).status_code == 400  # employees cannot
    assert graph(meta_sim, "DELETE", "/6000000003").json() == {"success": True}
    assert [u["id"] for u in graph(meta_sim, "GET", users).json()["data"]] == ["6000000001", "6000000002"]
    assert error(graph(meta_sim, "GET", f"/{meta_sim.waba_id}/message_templates", token=eve))["code"] == 200


def test_subscription_override_rules(meta_sim: MetaSim) -> None:
    path = f"/{meta_sim.waba_id}/subscribed_apps"
    too_long = "https://hooks.example/" + "a" * 190
    assert error(graph(meta_sim, "POST", path, json={"override_callback_uri": too_long, "verify_token": "v"}))[
        "code"] == 100  # fmt: skip
    assert error(graph(meta_sim, "POST", path, json={"override_callback_uri": "https://hooks.example/x"}))[
        "code"] == 100  # fmt: skip


def test_override_callback_is_verified_when_the_seed_says_so(meta_sim: MetaSim) -> None:
    def handshake(request: Request) -> Response:
        ok = request.query_params.get("hub.verify_token") == "right-token"
        return PlainTextResponse(request.query_params["hub.challenge"] if ok else "no", status_code=200 if ok else 403)

    meta_sim.sim.app.verify_override_callbacks = True
    with ServedApp(Starlette(routes=[Route("/hook", handshake)]), name="callback") as sink:
        body = {"override_callback_uri": f"{sink.url}/hook", "verify_token": "wrong-token"}
        assert error(graph(meta_sim, "POST", f"/{meta_sim.waba_id}/subscribed_apps", json=body))["code"] == 2200
        body["verify_token"] = "right-token"
        assert graph(meta_sim, "POST", f"/{meta_sim.waba_id}/subscribed_apps", json=body).json() == {"success": True}


# ---- budgets and usage headers --------------------------------------------------------------------


def _reseed_with_limits(meta_sim: MetaSim, **limits: int) -> None:
    seed = meta_sim.seed.model_copy(update={"limits": LimitsSeed(**limits)})
    meta_sim.admin.post("/_sim/seed", json=seed.model_dump(mode="json")).raise_for_status()


def test_app_budget_answers_code_4_with_real_usage(meta_sim: MetaSim) -> None:
    _reseed_with_limits(meta_sim, app_calls_per_hour=4)
    first = graph(meta_sim, "GET", f"/{meta_sim.number_id}")
    assert json.loads(first.headers["x-app-usage"])["call_count"] == 25
    for _ in range(3):
        graph(meta_sim, "GET", f"/{meta_sim.number_id}")
    throttled = graph(meta_sim, "GET", f"/{meta_sim.number_id}")
    assert throttled.status_code == 429 and error(throttled)["code"] == 4  # the operation declares 429
    assert json.loads(throttled.headers["x-app-usage"])["call_count"] == 125
    buc = json.loads(throttled.headers["x-business-use-case-usage"])[meta_sim.waba_id][0]
    assert buc["estimated_time_to_regain_access"] > 0
    templates = graph(meta_sim, "GET", f"/{meta_sim.waba_id}/message_templates")
    assert templates.status_code == 400 and error(templates)["code"] == 4  # spec declares no 429 there
    meta_sim.advance(3600)
    assert graph(meta_sim, "GET", f"/{meta_sim.number_id}").status_code == 200


def test_waba_budget_answers_80007(meta_sim: MetaSim) -> None:
    _reseed_with_limits(meta_sim, waba_calls_per_hour=2)
    for _ in range(2):
        assert graph(meta_sim, "GET", f"/{meta_sim.waba_id}/phone_numbers").status_code == 200
    throttled = graph(meta_sim, "GET", f"/{meta_sim.waba_id}/phone_numbers")
    assert error(throttled)["code"] == 80007
    usage = json.loads(throttled.headers["x-business-use-case-usage"])[meta_sim.waba_id][0]
    assert usage["call_count"] == 150 and usage["estimated_time_to_regain_access"] == 60
    assert graph(meta_sim, "GET", f"/{meta_sim.business_id}/business_users").status_code == 200  # no WABA


# ---- faults ---------------------------------------------------------------------------------------


async def test_fault_next_two_calls_429_then_ok(meta_sim: MetaSim) -> None:
    meta_sim.admin.post("/_sim/faults", json={"kind": "http429", "count": 2}).raise_for_status()
    async with meta_sim.client(max_retries=2) as client:
        assert (await client.get_phone_number(meta_sim.number_id)).id == meta_sim.number_id
    assert [(r["status"], r["fault"]) for r in meta_sim.requests()] == [(429, "http429"), (429, "http429"),
                                                                        (200, None)]  # fmt: skip


async def test_fault_windows_prefixes_and_throttles(meta_sim: MetaSim) -> None:
    meta_sim.admin.post("/_sim/faults", json={"kind": "throttle4", "seconds": 60,
                                              "path_prefix": f"/{meta_sim.waba_id}"}).raise_for_status()  # fmt: skip
    async with meta_sim.client() as client:
        await client.get_phone_number(meta_sim.number_id)  # another path: untouched
        with pytest.raises(MetaThrottled) as caught:
            await client.list_templates(meta_sim.waba_id)
        assert caught.value.code == 4
        meta_sim.advance(61)
        assert await client.list_templates(meta_sim.waba_id, name="login_code")
    meta_sim.admin.post("/_sim/faults", json={"kind": "http5xx", "count": 5}).raise_for_status()
    meta_sim.admin.delete("/_sim/faults").raise_for_status()
    assert graph(meta_sim, "GET", f"/{meta_sim.number_id}").status_code == 200


async def test_latency_fault_delays_the_answer(meta_sim: MetaSim) -> None:
    meta_sim.admin.post("/_sim/faults", json={"kind": "latency", "count": 1, "latency_ms": 2000}).raise_for_status()
    async with meta_sim.client(timeout_s=0.2) as client:
        with pytest.raises(MetaUnavailable):
            await client.get_phone_number(meta_sim.number_id)
        assert (await client.get_phone_number(meta_sim.number_id)).id == meta_sim.number_id


def test_faulted_calls_change_nothing(meta_sim: MetaSim) -> None:
    meta_sim.admin.post("/_sim/faults", json={"kind": "http5xx", "count": 1}).raise_for_status()
    assert graph(meta_sim, "POST", f"/{meta_sim.number_id}/deregister").status_code == 500
    assert meta_sim.sim.numbers[meta_sim.number_id].registered
    assert meta_sim.admin.get("/_sim/state").json()["phone_numbers"][0]["registration_attempts_in_window"] == 0


# ---- the request record and the state never hold secrets ------------------------------------------


def test_request_record_and_state_mask_every_secret(meta_sim: MetaSim) -> None:
    token, pin = meta_sim.token.get_secret_value(), meta_sim.pin().get_secret_value()
    proof = appsecret_proof(token, meta_sim.app_secret.get_secret_value())
    other = meta_sim.admin.post("/_sim/tokens", json={"user_id": "6000000001"}).json()["access_token"]
    graph(meta_sim, "GET", "/debug_token", params={"input_token": other})
    graph(meta_sim, "POST", f"/{meta_sim.number_id}/register", json={"messaging_product": "whatsapp", "pin": pin})
    graph(meta_sim, "POST", f"/{meta_sim.number_id}", json={"pin": "975310"})
    graph(meta_sim, "POST", f"/{meta_sim.number_id}", data={"pin": "975311"})
    graph(meta_sim, "POST", f"/{meta_sim.waba_id}/subscribed_apps",
          json={"override_callback_uri": "https://hooks.example/x", "verify_token": "verify-me-please"})
    graph(meta_sim, "GET", f"/{meta_sim.number_id}", token=None, params={"access_token": token, "note": token})
    graph(meta_sim, "GET", f"/{token}")  # a token pasted where an id goes
    secret = meta_sim.admin.post("/_sim/app/reset-secret").json()["app_secret"]
    graph(meta_sim, "GET", "/debug_token", token=f"{meta_sim.app_id}|{secret}", proof=None,
          params={"input_token": token})  # fmt: skip
    record = meta_sim.admin.get("/_sim/requests").text
    state = meta_sim.admin.get("/_sim/state").text
    for value in (token, other, proof, pin, "975310", "975311", "verify-me-please", secret,
                  meta_sim.seed.app.secret):  # fmt: skip
        assert value not in record and value not in state
    entries = meta_sim.requests()
    assert entries[0]["query"]["input_token"] == "***" and entries[0]["token_id"] == meta_sim.token_id
    assert entries[1]["body"] == {"messaging_product": "whatsapp", "pin": "***"}


# ---- clock, seed, webhooks ------------------------------------------------------------------------


async def test_injected_clock_cannot_be_advanced_through_the_admin_api() -> None:
    seed, _, _ = fresh_demo_seed()
    now = [1_800_000_000.0]
    app = create_app(seed, clock=lambda: now[0])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim") as admin:
        assert (await admin.post("/_sim/clock", json={"advance_s": 1})).status_code == 409
        now[0] += 10
        assert (await admin.get("/_sim/clock")).json()["now"] == 1_800_000_010.0


def test_seed_loads_from_yaml_and_json_and_rejects_dangling_references(tmp_path: Any) -> None:
    seed, _, _ = fresh_demo_seed()
    data = seed.model_dump(mode="json")
    (tmp_path / "seed.json").write_text(json.dumps(data))
    import yaml

    (tmp_path / "seed.yaml").write_text(yaml.safe_dump(data))
    assert load_seed(tmp_path / "seed.json") == load_seed(tmp_path / "seed.yaml") == seed
    data["phone_numbers"][0]["waba_id"] = "3999999999"
    with pytest.raises(ValueError, match="unknown WABAs"):
        load_seed(data)


def test_webhook_delivery_signs_the_exact_bytes(meta_sim: MetaSim) -> None:
    received: list[tuple[bytes, str | None]] = []

    async def sink(request: Request) -> Response:
        received.append((await request.body(), request.headers.get("x-hub-signature-256")))
        return Response(status_code=200)

    payload = message_template_status_update(
        meta_sim.waba_id, time=1_800_000_000, event="DISABLED", template_id="5000000008",
        name="account_security_notice", language="en_US", reason="SCAM", category="UTILITY",
        disable_date="1800000000")  # fmt: skip
    payload["entry"][0]["changes"][0]["value"]["note"] = "Café / résumé"
    with ServedApp(Starlette(routes=[Route("/hook", sink, methods=["POST"])]), name="sink") as served:
        answer = meta_sim.admin.post("/_sim/webhooks/deliver", json={"callback_url": f"{served.url}/hook",
                                                                      "payload": payload}).json()  # fmt: skip
        old = meta_sim.app_secret.get_secret_value()
        meta_sim.admin.post("/_sim/app/reset-secret").raise_for_status()
        replay = meta_sim.admin.post("/_sim/webhooks/deliver", json={
            "callback_url": f"{served.url}/hook", "signature": "previous_secret",
            "payload": security(meta_sim.waba_id, time=1, event="PIN_CHANGED", display_phone_number="15550100001")})
    assert answer["status"] == replay.json()["status"] == 200
    body, header = received[0]
    assert header == "sha256=" + hmac.new(old.encode(), body, hashlib.sha256).hexdigest()
    assert answer["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert b"\\/" in body and b"\\u00e9" in body and json.loads(body) == payload  # Meta-style escaping
    body2, header2 = received[1]
    new = meta_sim.app_secret.get_secret_value()
    assert header2 != "sha256=" + hmac.new(new.encode(), body2, hashlib.sha256).hexdigest()
    assert header2 == "sha256=" + hmac.new(old.encode(), body2, hashlib.sha256).hexdigest()
    value = payload["entry"][0]["changes"][0]
    assert value["field"] == "message_template_status_update" and value["value"]["message_template_id"] == 5000000008
    assert SecretStr(new)  # the new secret is only ever handled as a SecretStr by the fixture
