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
    MetaTransient,
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


async def test_80007_waits_for_estimated_time_to_regain_access_capped_by_policy(
    graph: respx.Router, make_client: Callable[..., GraphClient], sleeps: Sleeps
) -> None:
    buc = {
        WABA: [
            {"type": "whatsapp_business_management", "call_count": 100, "estimated_time_to_regain_access": 1}
        ]
    }
    throttled = httpx.Response(400, headers={"X-Business-Use-Case-Usage": json.dumps(buc)}, json=envelope(80007))
    ok = httpx.Response(200, json={"data": [{"id": "9", "name": "promo", "status": "APPROVED"}]})
    route = graph.get(f"/{WABA}/message_templates").mock(side_effect=[throttled, throttled, ok])
    uncapped = make_client(backoff_cap_s=600, retry_budget_s=600)
    templates = await uncapped.list_templates(WABA, status=["APPROVED"])
    assert [t.name for t in templates] == ["promo"] and sleeps.delays == [60.0, 60.0]  # Meta's 1 minute
    sleeps.delays.clear()
    route.side_effect = [throttled, throttled, ok]
    await make_client(backoff_cap_s=10).list_templates(WABA, status=["APPROVED"])
    assert sleeps.delays == [10.0, 10.0]  # the policy's cap wins over Meta's minute
    assert route.call_count == 6


async def test_a_burst_of_429s_and_5xx_is_waited_out_within_the_budget(
    graph: respx.Router, make_client: Callable[..., GraphClient], sleeps: Sleeps
) -> None:
    """Issue 11 item 5: three 429s (regain in 1 min) then three 500s used to exhaust a count of 4."""
    buc = {WABA: [{"type": "whatsapp_business_management", "estimated_time_to_regain_access": 1}]}
    too_many = httpx.Response(429, headers={"X-Business-Use-Case-Usage": json.dumps(buc)}, json=envelope(4))
    broken = httpx.Response(500, json=envelope(2, is_transient=True))
    ok = httpx.Response(200, json={"data": [{"id": PN}]})
    route = graph.get(f"/{WABA}/phone_numbers").mock(side_effect=[too_many] * 3 + [broken] * 3 + [ok])
    numbers = await make_client(retry_budget_s=120, backoff_cap_s=10).list_phone_numbers(WABA)
    assert [n.id for n in numbers] == [PN] and route.call_count == 7
    assert sleeps.delays == [10.0, 10.0, 10.0, 8.0, 10.0, 10.0]  # hints capped, then exponential capped
    assert sum(sleeps.delays) <= 120


class FakeTime:
    """A monotonic clock that moves only when the client sleeps or a slow answer takes time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.delays: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds


async def test_retries_stop_when_the_time_budget_is_spent(
    graph: respx.Router, make_client: Callable[..., GraphClient]
) -> None:
    time_ = FakeTime()
    route = graph.get(f"/{PN}").respond(500, json=envelope(2))
    client = make_client(retry_budget_s=30, backoff_cap_s=10, sleep=time_.sleep, monotonic=time_)
    with pytest.raises(MetaTransient):
        await client.get_phone_number(PN)
    assert time_.delays == [1.0, 2.0, 4.0, 8.0, 10.0]  # the next 10 s wait would pass 30 s
    assert route.call_count == 6 and time_.now <= 30


async def test_slow_answers_count_against_the_budget(
    graph: respx.Router, make_client: Callable[..., GraphClient]
) -> None:
    time_ = FakeTime()

    def slow_failure(_request: httpx.Request) -> httpx.Response:
        time_.now += 9.0  # each attempt takes 9 s before Meta answers 500
        return httpx.Response(500, json=envelope(2))

    route = graph.get(f"/{PN}").mock(side_effect=slow_failure)
    client = make_client(retry_budget_s=30, backoff_cap_s=10, sleep=time_.sleep, monotonic=time_)
    with pytest.raises(MetaTransient):
        await client.get_phone_number(PN)
    assert route.call_count == 3 and time_.delays == [1.0, 2.0]  # 9+1+9+2+9 = 30; another 4 s would pass it


async def test_max_retries_zero_means_one_attempt(
    graph: respx.Router, make_client: Callable[..., GraphClient], sleeps: Sleeps
) -> None:
    route = graph.get(f"/{PN}").respond(500, json=envelope(2))
    with pytest.raises(MetaTransient):
        await make_client(max_retries=0).get_phone_number(PN)
    assert route.call_count == 1 and sleeps.delays == []


async def test_wait_longer_than_the_whole_budget_is_raised_at_once(
    graph: respx.Router, client: GraphClient, sleeps: Sleeps
) -> None:
    buc = {WABA: [{"type": "whatsapp_business_management", "estimated_time_to_regain_access": 5}]}
    route = graph.get(f"/{WABA}/assigned_users").respond(
        400, headers={"X-Business-Use-Case-Usage": json.dumps(buc)}, json=envelope(80008)
    )
    with pytest.raises(MetaThrottled) as caught:
        await client.list_assigned_users(WABA, BUSINESS)  # 300 s asked, 120 s budget
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
    # exponential (jitter injected as 0), capped at 10 s, until the next wait would pass the 120 s budget
    assert sleeps.delays == [1.0, 2.0, 4.0, 8.0] + [10.0] * 10 and route.call_count == 15
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


async def test_registration_calls_keep_a_count_not_the_time_budget(
    graph: respx.Router, client: GraphClient, ledger: RegistrationLedger, sleeps: Sleeps
) -> None:
    route = graph.post(f"/{PN}/deregister").respond(503)
    with pytest.raises(MetaTransient):
        await client.deregister_phone_number(PN)
    assert route.call_count == 3 and len(ledger.history(PN)) == 3  # the first try and registration_retries=2
    assert sleeps.delays == [1.0, 2.0]


async def test_registration_calls_need_a_ledger(
    graph: respx.Router, make_client: Callable[..., GraphClient]
) -> None:
    route = graph.post(f"/{PN}/deregister").respond(json=OK)
    with pytest.raises(ConfigError, match="RegistrationLedger"):
        await make_client(ledger=None).deregister_phone_number(PN)
    assert route.call_count == 0
