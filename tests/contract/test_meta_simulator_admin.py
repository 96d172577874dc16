"""The Meta Graph simulator over real HTTP: budgets and usage headers, and the admin API's faults,
clock, seed and webhook delivery (with the webhook payload builders).

Raw Graph calls go through `tests.support.meta_sim`; the expected answers follow the reference
(shared/reference/meta-graph-api.md).
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
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fixtures.meta import MetaSim, fresh_demo_seed
from tests.support.meta_sim import code, graph
from waguard.local.processes import ServedApp
from waguard.meta.errors import MetaThrottled, MetaUnavailable
from waguard.meta.simulator import (
    account_update,
    create_app,
    load_seed,
    message_template_status_update,
    security,
)
from waguard.meta.simulator.seed import LimitsSeed

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
