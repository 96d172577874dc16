"""The Meta Graph simulator over real HTTP: Meta's spec and its rules for phone numbers, templates,
business users, WABA access and subscriptions, and the pure paging and registration-window rules.

Answers of operations Meta's OpenAPI spec covers are checked with `tests.support.meta_openapi`;
the rest is checked against the reference (shared/reference/meta-graph-api.md). Raw Graph calls go
through `tests.support.meta_sim`.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.fixtures.meta import MetaSim
from tests.support.meta_openapi import validate_request, validate_response
from tests.support.meta_sim import WA, code, error, graph, issue
from waguard.local.processes import ServedApp
from waguard.meta.simulator import rules

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
