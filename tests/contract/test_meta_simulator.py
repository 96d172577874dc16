"""The Meta Graph simulator over real HTTP: Meta's rules, its spec, the admin API, faults, webhooks.

Answers of operations Meta's OpenAPI spec covers are checked with `tests.support.meta_openapi`;
the rest is checked against the reference (shared/reference/meta-graph-api.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.fixtures.meta import MetaSim, fresh_demo_seed
from tests.support.meta_openapi import validate_request, validate_response
from waguard.meta.errors import MetaThrottled, MetaUnavailable
from waguard.meta.simulator import (
    account_update,
    create_app,
    load_seed,
    message_template_status_update,
    security,
)
from waguard.meta.simulator import rules
from waguard.meta.simulator.record import Masker
from waguard.meta.simulator.rules import appsecret_proof
from waguard.meta.simulator.seed import LimitsSeed
from waguard.servers import ServedApp

UA = "waguard/0.1.0"  # the spec validates User-Agent against name/X.Y.Z
DEFAULT: Any = object()
WA = {"messaging_product": "whatsapp"}


def graph(m: MetaSim, method: str, path: str, *, token: Any = DEFAULT, proof: Any = True,
          params: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:  # fmt: skip
    """One raw Graph call: Bearer token and (by default) a correct appsecret_proof."""
    tok = m.token.get_secret_value() if token is DEFAULT else token
    headers = {"User-Agent": UA, **({"Authorization": f"Bearer {tok}"} if tok else {})}
    query = dict(params or {})
    if proof is True and tok:
        query["appsecret_proof"] = appsecret_proof(tok, m.app_secret.get_secret_value())
    elif isinstance(proof, str):
        query["appsecret_proof"] = proof
    return m.admin.request(method, f"/{m.version}{path}", params=query, headers=headers, **kwargs)


def error(response: httpx.Response) -> dict[str, Any]:
    """The `error` object of Meta's envelope, checking the envelope's mandatory keys."""
    err = response.json()["error"]
    assert {"message", "type", "code", "fbtrace_id"} <= set(err)
    return dict(err)


def code(response: httpx.Response) -> int:
    """The Graph error code of an answer."""
    return int(error(response)["code"])


def issue(m: MetaSim, user_id: str, **extra: Any) -> dict[str, str]:
    """A new token through the admin API: {"id", "access_token"}."""
    response = m.admin.post("/_sim/tokens", json={"user_id": user_id, **extra})
    response.raise_for_status()
    return dict(response.json())


def debug(m: MetaSim, input_token: str, **kwargs: Any) -> httpx.Response:
    """GET /debug_token."""
    return graph(m, "GET", "/debug_token", params={"input_token": input_token}, **kwargs)


# ---- Meta's spec ----------------------------------------------------------------------------------


def test_answers_of_covered_operations_conform_to_metas_spec(meta_sim: MetaSim) -> None:
    m, waba, pn = meta_sim, meta_sim.waba_id, meta_sim.number_id
    fields = "id,display_phone_number,status,name_status"
    steps: list[tuple[str, str, dict[str, Any], str | None, int]] = [
        ("GET", f"/{pn}", {"params": {"fields": fields}}, "phone_number", 200),
        ("GET", f"/{pn}", {}, "phone_number", 200),
        ("GET", f"/{waba}/phone_numbers", {}, None, 200),
        ("GET", f"/{waba}/phone_numbers", {"params": {"limit": "1"}}, None, 200),
        ("POST", f"/{pn}/deregister", {}, None, 200),
        ("POST", f"/{pn}/deregister", {}, None, 400),  # not registered any more: 100/2207051
        ("POST", f"/{pn}/register", {"json": {**WA, "pin": m.pin().get_secret_value()}}, None, 200),
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
        ("GET", f"/{waba}/assigned_users", {"params": {"business": m.business_id}}, None, 200),
        ("DELETE", f"/{waba}/assigned_users", {"data": {"user": "6000000003"}}, None, 200),
        ("GET", "/999999", {}, "phone_number", 400),  # 100/33
    ]  # fmt: skip
    for method, path, kwargs, node, status in steps:
        response = graph(m, method, path, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        assert validate_request(response.request, node=node) == [], (method, path)
        assert validate_response(response.request, response, node=node) == [], (method, path)
    revoked = graph(m, "POST", f"/{pn}/deregister", token="EAAGnotatokenanybodyissued0123")
    assert revoked.status_code == 401 and code(revoked) == 190
    bad_pin = graph(m, "POST", f"/{pn}/register", json={**WA, "pin": "12345"})
    assert validate_request(bad_pin.request) != []  # the request breaks the spec; the answer must not
    for response in (revoked, bad_pin):
        assert response.status_code in (400, 401)
        assert validate_response(response.request, response) == []


# ---- access tokens and appsecret_proof ------------------------------------------------------------


def test_token_problems_answer_metas_codes(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.number_id}"
    assert code(graph(m, "GET", path, token=None)) == 104
    unknown = graph(m, "GET", path, token="EAAGunknown0123456789abcdef")
    assert unknown.status_code == 401 and code(unknown) == 190
    short_lived = issue(m, "6000000001", lifetime_s=3600)["access_token"]
    assert graph(m, "GET", path, token=short_lived).status_code == 200
    m.advance(3601)
    expired = error(graph(m, "GET", path, token=short_lived))
    assert (expired["code"], expired["error_subcode"]) == (190, 463)
    m.admin.post("/_sim/tokens/revoke", json={"token_id": m.token_id}).raise_for_status()
    revoked = error(graph(m, "GET", path))
    assert (revoked["code"], revoked["error_subcode"]) == (190, 467)


def test_appsecret_proof_is_checked_against_the_current_secret(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.number_id}"
    assert graph(m, "GET", path, proof=None).status_code == 200  # switch off: proof optional
    wrong = error(graph(m, "GET", path, proof="0" * 64))
    assert (wrong["code"], wrong["type"]) == (100, "GraphMethodException")
    assert wrong["message"] == "Invalid appsecret_proof provided in the API argument"
    m.admin.post("/_sim/app/require-proof", json={"enabled": True}).raise_for_status()
    missing = error(graph(m, "GET", path, proof=None))
    assert (missing["code"], missing["type"]) == (100, "GraphMethodException")
    old_proof = appsecret_proof(m.token.get_secret_value(), m.app_secret.get_secret_value())
    assert graph(m, "GET", path, proof=old_proof).status_code == 200
    new_secret = m.admin.post("/_sim/app/reset-secret").json()["app_secret"]
    assert new_secret == m.app_secret.get_secret_value()
    assert error(graph(m, "GET", path, proof=old_proof))["message"].startswith("Invalid appsecret_proof")
    assert graph(m, "GET", path).status_code == 200  # a proof under the new secret


def test_debug_token_reports_revocation_and_app_tokens_follow_the_secret(meta_sim: MetaSim) -> None:
    m = meta_sim
    other = issue(m, "6000000002", type="USER")
    data = debug(m, other["access_token"]).json()["data"]
    assert data["is_valid"] is True and data["type"] == "USER" and data["user_id"] == "6000000002"
    assert {"app_id", "application", "expires_at", "data_access_expires_at", "issued_at", "scopes",
            "granular_scopes"} <= set(data)  # fmt: skip
    m.admin.post("/_sim/tokens/revoke", json={"token_id": other["id"]}).raise_for_status()
    data = debug(m, other["access_token"]).json()["data"]
    assert data["is_valid"] is False and data["error"]["code"] == 190
    assert debug(m, "not-a-token-at-all").json()["data"]["is_valid"] is False
    app_token = f"{m.app_id}|{m.app_secret.get_secret_value()}"
    assert debug(m, m.token.get_secret_value(), token=app_token, proof=None).json()["data"]["is_valid"]
    m.admin.post("/_sim/app/reset-secret").raise_for_status()
    assert code(debug(m, app_token, token=app_token, proof=None)) == 190


def test_system_user_tokens_generate_with_proof_and_revoke_together(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.system_user_id}/access_tokens"
    form = {"business_app": m.app_id, "scope": "whatsapp_business_management",
            "set_token_expires_in_60_days": "true"}  # fmt: skip
    assert code(graph(m, "POST", path, proof=None, data=form)) == 100  # proof required here
    assert code(graph(m, "POST", path, data={"scope": "x"})) == 100  # business_app required
    new = graph(m, "POST", path, data=form).json()["access_token"]
    info = debug(m, new).json()["data"]
    assert info["is_valid"] and info["type"] == "SYSTEM_USER" and info["expires_at"] > info["issued_at"]
    assert graph(m, "DELETE", path).json() == {"success": True}
    assert [t["is_valid"] for t in m.admin.get("/_sim/tokens").json()["tokens"]] == [False, False]


# ---- phone numbers --------------------------------------------------------------------------------


def test_register_deregister_budget_is_ten_per_72h_and_counts_every_request(meta_sim: MetaSim) -> None:
    m, pn, pin = meta_sim, meta_sim.number_id, meta_sim.pin().get_secret_value()
    for i in range(10):
        if i % 2 == 0:
            assert graph(m, "POST", f"/{pn}/deregister").status_code == 200
        else:  # the 10th request carries a wrong PIN: it fails, and still counts
            graph(m, "POST", f"/{pn}/register", json={**WA, "pin": pin if i != 9 else "000000"})
    for _ in range(2):  # the 11th and later
        assert code(graph(m, "POST", f"/{pn}/register", json={**WA, "pin": pin})) == 133016
    m.admin.post("/_sim/clock", json={"advance_s": 72 * 3600}).raise_for_status()
    assert graph(m, "POST", f"/{pn}/register", json={**WA, "pin": pin}).json() == {"success": True}
    assert m.sim.numbers[pn].registered


@pytest.mark.parametrize("body", [
    {"pin": "123456"}, {"messaging_product": "sms", "pin": "123456"}, WA, {**WA, "pin": "12345"},
    {**WA, "pin": 123456},
])  # fmt: skip
def test_register_requires_whatsapp_and_a_six_digit_string_pin(
    meta_sim: MetaSim, body: dict[str, Any]
) -> None:
    assert code(graph(meta_sim, "POST", f"/{meta_sim.number_id}/register", json=body)) == 100


def test_register_checks_the_pin_and_the_pin_can_be_changed(meta_sim: MetaSim) -> None:
    m, pn = meta_sim, meta_sim.number_id
    other = "111111" if m.pin().get_secret_value() != "111111" else "222222"
    assert code(graph(m, "POST", f"/{pn}/register", json={**WA, "pin": other})) == 133005
    for bad in ("12345", "abcdef", 123456):
        assert code(graph(m, "POST", f"/{pn}", json={"pin": bad})) == 100
    assert graph(m, "POST", f"/{pn}", json={"pin": other}).json() == {"success": True}
    assert m.pin().get_secret_value() == other
    fresh = "4000000003"  # never registered, no PIN yet: registration sets it
    assert graph(m, "POST", f"/{fresh}/register", json={**WA, "pin": "135790"}).json() == {"success": True}
    assert m.pin(fresh).get_secret_value() == "135790"


def test_unknown_objects_and_edges_answer_graphs_errors(meta_sim: MetaSim) -> None:
    m = meta_sim
    missing = error(graph(m, "POST", "/123456789/deregister"))
    assert (missing["code"], missing["error_subcode"]) == (100, 33)
    assert "Unsupported post request. Object with ID '123456789' does not exist" in missing["message"]
    assert code(graph(m, "GET", f"/{m.waba_id}/nonsense")) == 100
    assert code(graph(m, "GET", f"/{m.number_id}", params={"fields": "id,bogus"})) == 100
    assert error(graph(m, "DELETE", f"/{m.system_user_id}"))["error_subcode"] == 33  # Meta has no such DELETE


# ---- templates ------------------------------------------------------------------------------------


def _names(response: httpx.Response) -> list[tuple[str, str]]:
    return [(t["name"], t["language"]) for t in response.json()["data"]]


def test_template_filters(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.waba_id}/message_templates"

    def names(**params: str) -> list[tuple[str, str]]:
        return _names(graph(m, "GET", path, params=params))

    assert names(name="spring_sale") == [("spring_sale", "en_US"), ("spring_sale", "de_DE")]
    disabled_or_paused = [("order_update", "pt_BR"), ("winter_newsletter", "fr_FR")]
    assert names(status="DISABLED,PAUSED") == names(status='["DISABLED","PAUSED"]') == disabled_or_paused
    assert names(category="AUTHENTICATION") == [("login_code", "en_US")]
    assert len(names(language="en_US")) == 4
    assert names(since=str(1767225600 + 10 * 86400)) == [("account_security_notice", "en_US")]
    assert code(graph(m, "GET", path, params={"status": "SHINY"})) == 100


def test_template_paging_walks_every_page_without_secrets_in_links(meta_sim: MetaSim) -> None:
    path, seen, after = f"/{meta_sim.waba_id}/message_templates", [], None
    while True:
        params = {"limit": "3", **({"after": after} if after else {})}
        page = graph(meta_sim, "GET", path, params=params).json()
        seen += [t["id"] for t in page["data"]]
        if "next" not in page.get("paging", {}):
            break
        assert "appsecret_proof" not in page["paging"]["next"]
        after = page["paging"]["cursors"]["after"]
    assert seen == [t.id for t in meta_sim.seed.templates]


def test_template_delete_rules(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.waba_id}/message_templates"

    def delete(**params: str) -> httpx.Response:
        return graph(m, "DELETE", path, params=params)

    assert code(delete(hsm_id="5000000001")) == 100  # hsm_id needs the name too
    assert code(delete(name="no_such_template")) == 100
    assert code(delete(hsm_id="5000000005", name="order_update")) == 100  # id and name disagree
    assert code(delete(name="winter_newsletter")) == 100 and "5000000007" in m.sim.templates  # DISABLED
    assert delete(hsm_id="5000000002", name="order_update").json() == {"success": True}
    by_name = {"name": "order_update"}
    remaining = [("order_update", "en_US"), ("order_update", "pt_BR")]
    assert _names(graph(m, "GET", path, params=by_name)) == remaining
    assert delete(**by_name).json() == {"success": True}
    assert _names(graph(m, "GET", path, params=by_name)) == []
    assert error(graph(m, "GET", "/5000000001"))["error_subcode"] == 33


# ---- business users, WABA access, subscriptions ---------------------------------------------------


def test_assigned_users_need_business_and_accept_user_in_query_or_form(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.waba_id}/assigned_users"
    assert error(graph(m, "GET", path))["message"] == "(#100) The parameter business is required"
    assert graph(m, "DELETE", path, params={"user": "6000000003"}).json() == {"success": True}
    assert graph(m, "DELETE", path, data={"user": "6000000002"}).json() == {"success": True}
    listed = graph(m, "GET", path, params={"business": m.business_id}).json()["data"]
    assert [u["id"] for u in listed] == ["6000000001", "7000000001"]


def test_removed_business_user_loses_access(meta_sim: MetaSim) -> None:
    m = meta_sim
    eve = issue(m, "6000000003", type="USER")["access_token"]
    assert code(graph(m, "DELETE", "/6000000003", token=eve)) == 200  # employees cannot remove people
    assert graph(m, "DELETE", "/6000000003").json() == {"success": True}
    people = graph(m, "GET", f"/{m.business_id}/business_users").json()["data"]
    assert [u["id"] for u in people] == ["6000000001", "6000000002"]
    assert code(graph(m, "GET", f"/{m.waba_id}/message_templates", token=eve)) == 200


def test_subscription_override_rules(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.waba_id}/subscribed_apps"
    too_long = "https://hooks.example/" + "a" * 190
    assert code(graph(m, "POST", path, json={"override_callback_uri": too_long, "verify_token": "v"})) == 100
    assert code(graph(m, "POST", path, json={"override_callback_uri": "https://hooks.example/x"})) == 100


def test_override_callback_is_verified_when_the_seed_says_so(meta_sim: MetaSim) -> None:
    def handshake(request: Request) -> Response:
        if request.query_params.get("hub.verify_token") != "right-token":
            return PlainTextResponse("no", status_code=403)
        return PlainTextResponse(request.query_params["hub.challenge"])

    m, path = meta_sim, f"/{meta_sim.waba_id}/subscribed_apps"
    m.sim.app.verify_override_callbacks = True
    with ServedApp(Starlette(routes=[Route("/hook", handshake)]), name="callback") as sink:
        body = {"override_callback_uri": f"{sink.url}/hook", "verify_token": "wrong-token"}
        assert code(graph(m, "POST", path, json=body)) == 2200
        body["verify_token"] = "right-token"
        assert graph(m, "POST", path, json=body).json() == {"success": True}


# ---- budgets and usage headers --------------------------------------------------------------------


def _reseed_with_limits(m: MetaSim, **limits: int) -> None:
    seed = m.seed.model_copy(update={"limits": LimitsSeed(**limits)})
    m.admin.post("/_sim/seed", json=seed.model_dump(mode="json")).raise_for_status()


def test_app_budget_answers_code_4_with_real_usage(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.number_id}"
    _reseed_with_limits(m, app_calls_per_hour=4)
    assert json.loads(graph(m, "GET", path).headers["x-app-usage"])["call_count"] == 25
    for _ in range(3):
        graph(m, "GET", path)
    throttled = graph(m, "GET", path)
    assert throttled.status_code == 429 and code(throttled) == 4  # the operation declares 429
    assert json.loads(throttled.headers["x-app-usage"])["call_count"] == 125
    buc = json.loads(throttled.headers["x-business-use-case-usage"])[m.waba_id][0]
    assert buc["estimated_time_to_regain_access"] > 0
    templates = graph(m, "GET", f"/{m.waba_id}/message_templates")
    assert templates.status_code == 400 and code(templates) == 4  # the spec declares no 429 there
    m.advance(3600)
    assert graph(m, "GET", path).status_code == 200


def test_waba_budget_answers_80007(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.waba_id}/phone_numbers"
    _reseed_with_limits(m, waba_calls_per_hour=2)
    for _ in range(2):
        assert graph(m, "GET", path).status_code == 200
    throttled = graph(m, "GET", path)
    assert code(throttled) == 80007
    usage = json.loads(throttled.headers["x-business-use-case-usage"])[m.waba_id][0]
    assert usage["call_count"] == 150 and usage["estimated_time_to_regain_access"] == 60
    assert graph(m, "GET", f"/{m.business_id}/business_users").status_code == 200  # not a WABA call


# ---- faults ---------------------------------------------------------------------------------------


def inject(m: MetaSim, **fault: Any) -> None:
    """POST /_sim/faults."""
    m.admin.post("/_sim/faults", json=fault).raise_for_status()


async def test_fault_next_two_calls_429_then_ok(meta_sim: MetaSim) -> None:
    inject(meta_sim, kind="http429", count=2)
    async with meta_sim.client(max_retries=2) as client:
        assert (await client.get_phone_number(meta_sim.number_id)).id == meta_sim.number_id
    seen = [(r["status"], r["fault"]) for r in meta_sim.requests()]
    assert seen == [(429, "http429"), (429, "http429"), (200, None)]


async def test_fault_windows_prefixes_and_throttles(meta_sim: MetaSim) -> None:
    m = meta_sim
    inject(m, kind="throttle4", seconds=60, path_prefix=f"/{m.waba_id}")
    async with m.client() as client:
        await client.get_phone_number(m.number_id)  # another path: untouched
        with pytest.raises(MetaThrottled) as caught:
            await client.list_templates(m.waba_id)
        assert caught.value.code == 4
        m.advance(61)
        assert await client.list_templates(m.waba_id, name="login_code")
    inject(m, kind="http5xx", count=5)
    m.admin.delete("/_sim/faults").raise_for_status()
    assert graph(m, "GET", f"/{m.number_id}").status_code == 200


async def test_latency_fault_delays_the_answer(meta_sim: MetaSim) -> None:
    inject(meta_sim, kind="latency", count=1, latency_ms=2000)
    async with meta_sim.client(timeout_s=0.2) as client:
        with pytest.raises(MetaUnavailable):
            await client.get_phone_number(meta_sim.number_id)
        assert (await client.get_phone_number(meta_sim.number_id)).id == meta_sim.number_id


def test_injected_throttle_looks_like_a_spent_budget(meta_sim: MetaSim) -> None:
    inject(meta_sim, kind="throttle80007", count=1)
    throttled = graph(meta_sim, "GET", f"/{meta_sim.number_id}")
    assert throttled.status_code == 429 and code(throttled) == 80007  # GET /{pn} declares 429
    usage = json.loads(throttled.headers["x-business-use-case-usage"])[meta_sim.waba_id][0]
    assert usage["call_count"] == 100 and usage["estimated_time_to_regain_access"] >= 1
    assert graph(meta_sim, "GET", f"/{meta_sim.number_id}").status_code == 200


def test_faulted_calls_change_nothing(meta_sim: MetaSim) -> None:
    inject(meta_sim, kind="http5xx", count=1)
    assert graph(meta_sim, "POST", f"/{meta_sim.number_id}/deregister").status_code == 500
    assert meta_sim.sim.numbers[meta_sim.number_id].registered
    number = meta_sim.admin.get("/_sim/state").json()["phone_numbers"][0]
    assert number["registration_attempts_in_window"] == 0


# ---- the request record and the state never hold secrets ------------------------------------------


def test_request_record_and_state_mask_every_secret(meta_sim: MetaSim) -> None:
    m, pn = meta_sim, meta_sim.number_id
    token, pin = m.token.get_secret_value(), m.pin().get_secret_value()
    proof = appsecret_proof(token, m.app_secret.get_secret_value())
    other = issue(m, "6000000001")["access_token"]
    debug(m, other)
    graph(m, "POST", f"/{pn}/register", json={**WA, "pin": pin})
    graph(m, "POST", f"/{pn}", json={"pin": "975310"})
    graph(m, "POST", f"/{pn}", data={"pin": "975311"})
    hook = {"override_callback_uri": "https://hooks.example/x", "verify_token": "verify-me-please"}
    graph(m, "POST", f"/{m.waba_id}/subscribed_apps", json=hook)
    graph(m, "GET", f"/{pn}", token=None, params={"access_token": token, "note": token})
    assert token not in graph(m, "GET", f"/{token}").text  # a token pasted where an id goes: not echoed
    secret = m.admin.post("/_sim/app/reset-secret").json()["app_secret"]
    debug(m, token, token=f"{m.app_id}|{secret}", proof=None)
    record, state = m.admin.get("/_sim/requests").text, m.admin.get("/_sim/state").text
    secrets = (token, other, proof, pin, "975310", "975311", "verify-me-please", secret, m.seed.app.secret)
    for value in secrets:
        assert value not in record and value not in state
    entries = m.requests()
    assert entries[0]["query"]["input_token"] == "***" and entries[0]["token_id"] == m.token_id
    assert entries[1]["body"] == {**WA, "pin": "***"}
    assert entries[1]["operation"] == "phone_number.register"


# ---- clock, seed, webhooks ------------------------------------------------------------------------


async def test_injected_clock_cannot_be_advanced_through_the_admin_api() -> None:
    seed, _, _ = fresh_demo_seed()
    now = [1_800_000_000.0]
    app = create_app(seed, clock=lambda: now[0])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim") as admin:
        assert (await admin.post("/_sim/clock", json={"advance_s": 1})).status_code == 409
        now[0] += 10
        assert (await admin.get("/_sim/clock")).json()["now"] == 1_800_000_010.0


def test_seed_loads_from_yaml_and_json_and_rejects_dangling_references(tmp_path: Path) -> None:
    seed, _, _ = fresh_demo_seed()
    data = seed.model_dump(mode="json")
    (tmp_path / "seed.json").write_text(json.dumps(data))
    (tmp_path / "seed.yaml").write_text(yaml.safe_dump(data))
    assert load_seed(tmp_path / "seed.json") == load_seed(tmp_path / "seed.yaml") == seed
    data["phone_numbers"][0]["waba_id"] = "3999999999"
    with pytest.raises(ValueError, match="unknown WABAs"):
        load_seed(data)


def _hmac(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_webhook_delivery_signs_the_exact_bytes(meta_sim: MetaSim) -> None:
    received: list[tuple[bytes, str | None]] = []

    async def sink(request: Request) -> Response:
        received.append((await request.body(), request.headers.get("x-hub-signature-256")))
        return Response(status_code=200)

    m = meta_sim
    payload = message_template_status_update(
        m.waba_id, time=1_800_000_000, event="DISABLED", template_id="5000000008",
        name="account_security_notice", language="en_US", reason="SCAM", category="UTILITY",
        disable_date="1800000000")  # fmt: skip
    payload["entry"][0]["changes"][0]["value"]["note"] = "Café / résumé"
    pin_changed = security(m.waba_id, time=1, event="PIN_CHANGED", display_phone_number="15550100001")
    with ServedApp(Starlette(routes=[Route("/hook", sink, methods=["POST"])]), name="sink") as served:
        url = f"{served.url}/hook"
        answer = m.admin.post("/_sim/webhooks/deliver", json={"callback_url": url, "payload": payload}).json()
        old = m.app_secret.get_secret_value()
        m.admin.post("/_sim/app/reset-secret").raise_for_status()
        replay = m.admin.post("/_sim/webhooks/deliver", json={
            "callback_url": url, "signature": "previous_secret", "payload": pin_changed}).json()  # fmt: skip
    assert answer["status"] == replay["status"] == 200
    body, header = received[0]
    assert header == _hmac(old, body) and answer["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert b"\\/" in body and b"\\u00e9" in body and json.loads(body) == payload  # Meta-style escaping
    body2, header2 = received[1]
    assert header2 == _hmac(old, body2) != _hmac(m.app_secret.get_secret_value(), body2)
    change = payload["entry"][0]["changes"][0]
    assert change["field"] == "message_template_status_update"
    assert change["value"]["message_template_id"] == 5000000008  # an integer, as Meta sends it


def test_webhook_payload_builders_follow_metas_shapes() -> None:
    takeover = account_update("3000000001", time=1, event="PARTNER_ADDED",
                              waba_info={"waba_id": "3000000001", "owner_business_id": "2000000001"})
    waba_info = {"waba_id": "3000000001", "owner_business_id": "2000000001"}
    value = {"event": "PARTNER_ADDED", "waba_info": waba_info}
    assert takeover == {
        "object": "whatsapp_business_account",
        "entry": [{"id": "3000000001", "time": 1, "changes": [{"value": value, "field": "account_update"}]}],
    }
    reset = security("3000000001", time=2, event="PIN_RESET_REQUEST", display_phone_number="15550100001",
                     requester="6000000003")  # fmt: skip
    assert reset["entry"][0]["changes"][0]["value"]["requester"] == "6000000003"


# ---- the pure rules, by property ------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=40), st.integers(min_value=1, max_value=12))
def test_paging_visits_every_item_once_whatever_the_page_size(count: int, limit: int) -> None:
    items = [{"id": str(1000 + i)} for i in range(count)]
    seen, params = [], {"limit": str(limit)}
    for _ in range(count + 2):
        page = rules.paginate(items, params, "http://sim/v23.0/1/edge")
        seen += [i["id"] for i in page["data"]]
        if "next" not in page.get("paging", {}):
            break
        params = {"limit": str(limit), "after": page["paging"]["cursors"]["after"]}
    assert seen == [i["id"] for i in items]


@given(st.lists(st.floats(min_value=0, max_value=500_000), max_size=30), st.floats(0, 500_000))
def test_registration_window_counts_only_the_last_72_hours(times: list[float], now: float) -> None:
    window = 72 * 3600.0
    kept = rules.in_window(times, now, window)
    assert all(now - window < t <= now for t in kept)
    assert len(kept) == sum(1 for t in times if now - window < t <= now)
    assert rules.registration_refused(len(kept), 10) == (len(kept) > 10)


secret_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=40)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))


@given(secret_text, st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12),
    st.sampled_from(["note", "input_token", "x"]))  # fmt: skip
def test_masker_never_lets_a_known_secret_through(secret: str, noise: Any, key: str) -> None:
    params = {key: f"prefix-{secret}-suffix", "nested": {"list": [secret, noise]}, "pin": "123456"}
    masked = Masker([secret, "123456"]).params(params)
    assert secret not in json.dumps(masked) and masked["pin"] == "***"
