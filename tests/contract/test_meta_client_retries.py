"""GraphClient against respx routes: retries and waits on throttling and transient failures, and the
registration budget kept in the ledger.

The router, the client, the injected sleep and the ledger come from tests/fixtures/meta.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
import respx
from pydantic import SecretStr

from tests.fixtures.meta import BUSINESS, NOW, OK, PIN, PN, WABA, Sleeps, envelope
from waguard.errors import ConfigError, Retryable
from waguard.meta.client import GraphClient
from waguard.meta.errors import (
    MetaPermissionDenied,
    MetaRegistrationLocked,
    MetaThrottled,
    MetaTokenInvalid,
    MetaUnavailable,
    RegistrationBudgetExhausted,
)
from waguard.meta.ledger import RegistrationLedger


# ---- retries ----------------------------------------------------------------------------------------


async def test_http_429_then_success_sleeps_retry_after(
    graph: respx.Router, client: GraphClient, sleeps: Sleeps
) -> None:
    route = graph.get(f"/{WABA}/subscribed_apps").mock(
        side_effect=[
            httpx.Response(
                429, headers={"Retry-After": "7"}, json=envelope(4, "Application request limit reached")
            ),
            httpx.Response(
                200, json={"data": [{"whatsapp_business_api_data": {"id": "1000000001", "name": "wa"}}]}
            ),
        ]
    )
    apps = await client.list_subscribed_apps(WABA)
    assert [a.app_id for a in apps] == ["1000000001"]
    assert route.call_count == 2 and sleeps.delays == [7.0]


async def test_80007_waits_for_estimated_time_to_regain_access(
    graph: respx.Router, client: GraphClient, sleeps: Sleeps
) -> None:
    buc = {
        WABA: [
            {"type": "whatsapp_business_management", "call_count": 100, "estimated_time_to_regain_access": 1}
        ]
    }
    route = graph.get(f"/{WABA}/message_templates").mock(
        side_effect=[
            httpx.Response(400, headers={"X-Business-Use-Case-Usage": json.dumps(buc)}, json=envelope(80007)),
            httpx.Response(200, json={"data": [{"id": "9", "name": "promo", "status": "APPROVED"}]}),
        ]
    )
    templates = await client.list_templates(WABA, status=["APPROVED"])
    assert [t.name for t in templates] == ["promo"]
    assert route.call_count == 2 and sleeps.delays == [60.0]


async def test_wait_longer_than_cap_is_raised_at_once(
    graph: respx.Router, client: GraphClient, sleeps: Sleeps
) -> None:
    buc = {WABA: [{"type": "whatsapp_business_management", "estimated_time_to_regain_access": 5}]}
    route = graph.get(f"/{WABA}/assigned_users").respond(
        400, headers={"X-Business-Use-Case-Usage": json.dumps(buc)}, json=envelope(80008)
    )
    with pytest.raises(MetaThrottled) as caught:
        await client.list_assigned_users(WABA, BUSINESS)
    assert caught.value.retry_after == 300.0 and isinstance(caught.value, Retryable)
    assert route.call_count == 1 and sleeps.delays == []


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [(400, 133016, MetaRegistrationLocked), (401, 190, MetaTokenInvalid), (403, 200, MetaPermissionDenied)],
)
async def test_never_retried(
    graph: respx.Router, client: GraphClient, sleeps: Sleeps, status: int, code: int, cls: type[Exception]
) -> None:
    route = graph.post(f"/{PN}/deregister").respond(status, json=envelope(code, is_transient=True))
    with pytest.raises(cls) as caught:
        await client.deregister_phone_number(PN)
    assert route.call_count == 1 and sleeps.delays == []
    assert caught.value.path == f"/{PN}/deregister" and caught.value.fbtrace_id == "TRACE1"  # type: ignore[attr-defined]


async def test_transport_errors_retried_then_raised_as_retryable(
    graph: respx.Router, client: GraphClient, sleeps: Sleeps
) -> None:
    route = graph.get(f"/{PN}").mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(MetaUnavailable) as caught:
        await client.get_phone_number(PN)
    assert isinstance(caught.value, Retryable)
    assert route.call_count == 5  # the first try and max_retries=4
    assert sleeps.delays == [1.0, 2.0, 4.0, 8.0]  # exponential, jitter injected as 0
    # The httpx error (its request URL carries the proof) is neither chained nor kept as context.
    assert caught.value.__cause__ is None and caught.value.__context__ is None


async def test_timeout_then_success(graph: respx.Router, client: GraphClient, sleeps: Sleeps) -> None:
    route = graph.get(f"/{PN}").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json={"id": PN})]
    )
    assert (await client.get_phone_number(PN)).id == PN
    assert route.call_count == 2 and sleeps.delays == [1.0]


async def test_transient_5xx_then_success(graph: respx.Router, client: GraphClient, sleeps: Sleeps) -> None:
    route = graph.post(f"/{PN}").mock(
        side_effect=[httpx.Response(500, json=envelope(2)), httpx.Response(200, json=OK)]
    )
    await client.set_two_step_pin(PN, SecretStr(PIN))
    assert route.call_count == 2 and sleeps.delays == [1.0]


# ---- the registration budget ------------------------------------------------------------------------


async def test_ledger_refuses_eleventh_deregister_without_sending(
    graph: respx.Router, client: GraphClient, ledger: RegistrationLedger
) -> None:
    route = graph.post(f"/{PN}/deregister").respond(json=OK)
    for _ in range(10):
        await client.deregister_phone_number(PN)
    with pytest.raises(RegistrationBudgetExhausted):
        await client.deregister_phone_number(PN)
    assert route.call_count == 10 and ledger.remaining(PN, NOW) == 0


async def test_every_attempt_sent_is_counted(
    graph: respx.Router, client: GraphClient, ledger: RegistrationLedger
) -> None:
    graph.post(f"/{PN}/register").mock(side_effect=[httpx.Response(503), httpx.Response(200, json=OK)])
    await client.register_phone_number(PN, SecretStr(PIN))
    assert [e.action for e in ledger.history(PN)] == ["register", "register"]


async def test_retries_stop_when_the_budget_runs_out(
    graph: respx.Router, client: GraphClient, ledger: RegistrationLedger
) -> None:
    for _ in range(8):
        ledger.reserve(PN, "deregister", NOW)
    route = graph.post(f"/{PN}/deregister").respond(503)
    with pytest.raises(RegistrationBudgetExhausted):
        await client.deregister_phone_number(PN)
    assert route.call_count == 2


async def test_registration_calls_need_a_ledger(
    graph: respx.Router, make_client: Callable[..., GraphClient]
) -> None:
    route = graph.post(f"/{PN}/deregister").respond(json=OK)
    with pytest.raises(ConfigError, match="RegistrationLedger"):
        await make_client(ledger=None).deregister_phone_number(PN)
    assert route.call_count == 0
