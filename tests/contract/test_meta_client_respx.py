"""GraphClient against respx routes: auth, proof, paging, retries, the budget, and no secret leaks."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from waguard.errors import ConfigError, Retryable
from waguard.meta.client import GraphClient, quiet_http_loggers
from waguard.meta.errors import (
    MetaPermissionDenied,
    MetaRegistrationLocked,
    MetaThrottled,
    MetaTokenInvalid,
    MetaUnavailable,
    MetaUnexpectedResponse,
    RegistrationBudgetExhausted,
)
from waguard.meta.ledger import RegistrationLedger
from waguard.settings import MetaSettings

BASE = "https://graph.test"
ROOT = f"{BASE}/v23.0"
# Independent vector: printf EAAB-system-user-token | openssl dgst -sha256 -hmac app-secret-1
TOKEN, APP_SECRET = "EAAB-system-user-token", "app-secret-1"
PROOF = "08ea98451d2f7912c7b06e51a288d5d0b807c458524ccbf54025921444f9ee9c"
PIN = "246810"
INPUT_TOKEN = "EAAleakedtokenunderinspection"
NEW_TOKEN = "EAAnewlyissuedsystemusertoken"
VERIFY = "verify-token-value"
SECRETS = (TOKEN, APP_SECRET, PROOF, PIN, INPUT_TOKEN, NEW_TOKEN, VERIFY)
PN, WABA, BUSINESS = "106853218861309", "3000000001", "2000000001"
NOW = 1_700_000_000.0
OK = {"success": True}


def envelope(code: int, message: str = "error", **extra: Any) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "TRACE1", **extra}
    }


class Sleeps:
    """The injected sleep: records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def graph() -> Iterator[respx.Router]:
    router = respx.Router(base_url=ROOT, assert_all_called=False)
    yield router


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def ledger(tmp_path: Path) -> RegistrationLedger:
    return RegistrationLedger(tmp_path / "ledger.sqlite3")


@pytest.fixture
async def make_client(
    graph: respx.Router, sleeps: Sleeps, ledger: RegistrationLedger
) -> AsyncIterator[Callable[..., GraphClient]]:
    made: list[GraphClient] = []

    def make(**overrides: Any) -> GraphClient:
        kwargs: dict[str, Any] = dict(
            base_url=BASE, version="v23.0", token=SecretStr(TOKEN), app_secret=SecretStr(APP_SECRET),
            transport=httpx.MockTransport(graph.async_handler), sleep=sleeps, ledger=ledger,
            clock=lambda: NOW, jitter=lambda: 0.0,
        )  # fmt: skip
        kwargs.update(overrides)
        made.append(GraphClient(**kwargs))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def client(make_client: Callable[..., GraphClient]) -> GraphClient:
    return make_client()


# ---- every call: auth, proof, user agent, url -------------------------------------------------------


async def test_every_call_sends_bearer_proof_and_user_agent(graph: respx.Router, client: GraphClient) -> None:
    route = graph.get(f"/{PN}").respond(json={"id": PN, "status": "CONNECTED"})
    number = await client.get_phone_number(PN)
    assert number.id == PN and number.status == "CONNECTED"
    request = route.calls.last.request
    assert str(request.url).startswith(f"{ROOT}/{PN}?")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["User-Agent"] == "waguard/0.1.0"
    assert request.url.params["appsecret_proof"] == PROOF
    assert "display_phone_number" in request.url.params["fields"]


async def test_no_proof_without_app_secret(
    graph: respx.Router, make_client: Callable[..., GraphClient]
) -> None:
    route = graph.post(f"/{PN}/deregister").respond(json=OK)
    await make_client(app_secret=None).deregister_phone_number(PN)
    assert "appsecret_proof" not in route.calls.last.request.url.params


async def test_async_with_closes_the_client(
    graph: respx.Router, make_client: Callable[..., GraphClient]
) -> None:
    graph.delete(f"/{WABA}/subscribed_apps").respond(json=OK)
    async with make_client() as client:
        await client.unsubscribe_app(WABA)
    with pytest.raises(RuntimeError):
        await client.unsubscribe_app(WABA)


# ---- paging -----------------------------------------------------------------------------------------


async def test_paging_follows_cursors_not_next_urls(graph: respx.Router, client: GraphClient) -> None:
    first = {
        "data": [{"id": "1", "display_phone_number": "+1 555"}],
        "paging": {"cursors": {"after": "CUR1"}, "next": "https://evil.example/steal?after=CUR1"},
    }
    last = {"data": [{"id": "2"}], "paging": {"cursors": {"before": "CUR1", "after": "CUR2"}}}
    route = graph.get(f"/{WABA}/phone_numbers").mock(
        side_effect=[httpx.Response(200, json=first), httpx.Response(200, json=last)]
    )
    numbers = await client.list_phone_numbers(WABA)
    assert [n.id for n in numbers] == ["1", "2"]
    assert route.call_count == 2
    second = route.calls[1].request
    assert second.url.host == "graph.test" and second.url.params["after"] == "CUR1"
    assert "after" not in route.calls[0].request.url.params


async def test_repeated_cursor_is_refused(graph: respx.Router, client: GraphClient) -> None:
    loop = {"data": [{"id": "1"}], "paging": {"cursors": {"after": "SAME"}, "next": "x"}}
    graph.get(f"/{BUSINESS}/business_users").respond(json=loop)
    with pytest.raises(MetaUnexpectedResponse, match="cursor"):
        await client.list_business_users(BUSINESS)


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


# ---- answers ----------------------------------------------------------------------------------------


async def test_mutation_without_success_true_is_unexpected(graph: respx.Router, client: GraphClient) -> None:
    graph.delete(f"/{WABA}/message_templates").respond(json={"success": False})
    with pytest.raises(MetaUnexpectedResponse, match="success"):
        await client.delete_template(WABA, "9", "promo")


async def test_answer_not_fitting_the_model_names_fields_not_values(
    graph: respx.Router, client: GraphClient
) -> None:
    graph.get("/debug_token").respond(json={"data": {"is_valid": "perhaps", "app_id": "x"}})
    with pytest.raises(MetaUnexpectedResponse) as caught:
        await client.debug_token(SecretStr(INPUT_TOKEN))
    assert "is_valid" in str(caught.value) and "perhaps" not in str(caught.value)
    assert caught.value.__context__ is None  # pydantic's error would quote the values


async def test_non_json_success_is_unexpected(graph: respx.Router, client: GraphClient) -> None:
    graph.get(f"/{PN}").respond(200, text="<html>captive portal</html>")
    with pytest.raises(MetaUnexpectedResponse, match="not JSON"):
        await client.get_phone_number(PN)


async def test_bad_pin_is_refused_before_sending(graph: respx.Router, client: GraphClient) -> None:
    route = graph.post(f"/{PN}").respond(json=OK)
    with pytest.raises(ValueError, match="pin") as caught:
        await client.set_two_step_pin(PN, SecretStr("12345"))
    assert "12345" not in str(caught.value) and route.call_count == 0


async def test_generate_token_returns_secretstr(graph: respx.Router, client: GraphClient) -> None:
    route = graph.post("/444/access_tokens").respond(json={"access_token": NEW_TOKEN})
    token = await client.generate_system_user_token(
        "444", app_id="1000000001", scopes=["whatsapp_business_management"]
    )
    assert isinstance(token, SecretStr) and token.get_secret_value() == NEW_TOKEN
    request = route.calls.last.request
    assert request.url.params["appsecret_proof"] == PROOF
    assert dict(httpx.QueryParams(request.content.decode())) == {
        "business_app": "1000000001",
        "scope": "whatsapp_business_management",
        "set_token_expires_in_60_days": "true",
    }


async def test_generate_token_needs_app_secret(
    graph: respx.Router, make_client: Callable[..., GraphClient]
) -> None:
    route = graph.post("/444/access_tokens").respond(json={"access_token": NEW_TOKEN})
    with pytest.raises(ConfigError, match="appsecret_proof"):
        await make_client(app_secret=None).generate_system_user_token("444", app_id="1", scopes=["x"])
    assert route.call_count == 0


async def test_debug_token_and_user_lists(graph: respx.Router, client: GraphClient) -> None:
    graph.get("/debug_token").respond(
        json={"data": {"app_id": "1", "type": "SYSTEM_USER", "is_valid": False, "expires_at": 0,
                       "granular_scopes": [{"scope": "whatsapp_business_management", "target_ids": [WABA]}]}}
    )  # fmt: skip
    graph.get(f"/{BUSINESS}/system_users").respond(
        json={"data": [{"id": "5", "name": "ci", "role": "ADMIN"}]}
    )
    users = graph.get(f"/{WABA}/assigned_users").respond(
        json={"data": [{"id": "7", "name": "eve", "tasks": ["MANAGE"]}]}
    )
    info = await client.debug_token(SecretStr(INPUT_TOKEN))
    assert info.is_valid is False and info.granular_scopes[0].target_ids == [WABA]
    assert [u.role for u in await client.list_system_users(BUSINESS)] == ["ADMIN"]
    assert [u.tasks for u in await client.list_assigned_users(WABA, BUSINESS)] == [["MANAGE"]]
    assert users.calls.last.request.url.params["business"] == BUSINESS


async def test_remove_assigned_user_sends_user_in_a_form_body(
    graph: respx.Router, client: GraphClient
) -> None:
    route = graph.delete(f"/{WABA}/assigned_users").respond(json=OK)
    await client.remove_assigned_user(WABA, "7")
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.content == b"user=7" and "user" not in request.url.params


async def test_from_settings(graph: respx.Router, tmp_path: Path, sleeps: Sleeps) -> None:
    meta = MetaSettings(
        graph_url=BASE, graph_version="v21.0", appsecret_proof=False, ledger_path=tmp_path / "l.db"
    )
    route = respx.Router(base_url=f"{BASE}/v21.0", assert_all_called=False)
    dereg = route.post(f"/{PN}/deregister").respond(json=OK)
    transport = httpx.MockTransport(route.async_handler)
    async with GraphClient.from_settings(
        meta, token=SecretStr(TOKEN), app_secret=SecretStr(APP_SECRET), transport=transport, sleep=sleeps
    ) as client:
        await client.deregister_phone_number(PN)
    assert "appsecret_proof" not in dereg.calls.last.request.url.params
    assert len(RegistrationLedger(tmp_path / "l.db").history(PN)) == 1


def test_from_settings_refuses_proof_without_secret(tmp_path: Path) -> None:
    meta = MetaSettings(graph_url=BASE, appsecret_proof=True, ledger_path=tmp_path / "l.db")
    with pytest.raises(ConfigError, match="appsecret_proof"):
        GraphClient.from_settings(meta, token=SecretStr(TOKEN), app_secret=None)


# ---- secrets never leak -----------------------------------------------------------------------------


@pytest.fixture
def quiet_loggers() -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    quiet_http_loggers()
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, "a secret value leaked"


async def test_no_secret_in_errors_reprs_or_logs(
    graph: respx.Router, client: GraphClient, caplog: pytest.LogCaptureFixture, quiet_loggers: None
) -> None:
    caplog.set_level(logging.DEBUG)
    # Meta-shaped failures that echo secrets back, plus retries that log.
    graph.get("/debug_token").respond(
        401, json=envelope(190, f"Invalid OAuth access token {INPUT_TOKEN} (proof {PROOF})",
                           error_user_msg=f"token {TOKEN}")
    )  # fmt: skip
    graph.post(f"/{PN}/register").respond(400, json=envelope(133005, f"PIN {PIN} mismatch"))
    graph.post(f"/{WABA}/subscribed_apps").mock(
        side_effect=httpx.ConnectError(f"refused {ROOT}?appsecret_proof={PROOF}")
    )
    graph.post("/444/access_tokens").respond(json={"access_token": NEW_TOKEN})
    graph.get(f"/{PN}").respond(200, json={"id": PN}, headers={"X-App-Usage": '{"call_count": 95}'})

    errors: list[BaseException] = []
    for call in (
        client.debug_token(SecretStr(INPUT_TOKEN)),
        client.register_phone_number(PN, SecretStr(PIN)),
        client.subscribe_app(WABA, "https://hooks.example/wa", SecretStr(VERIFY)),
    ):
        try:
            await call
        except Exception as err:  # noqa: BLE001 - collecting to inspect
            errors.append(err)
    token = await client.generate_system_user_token(
        "444", app_id="1", scopes=["whatsapp_business_management"]
    )
    await client.get_phone_number(PN)

    assert [type(e) for e in errors] == [MetaTokenInvalid, type(errors[1]), MetaUnavailable]
    for err in errors:
        assert_no_secret(str(err))
        assert_no_secret(repr(err))
        assert_no_secret(repr(vars(err)))
    assert_no_secret(repr(token) + str(token))
    assert_no_secret(repr(client))
    assert any("retry" in r.getMessage() for r in caplog.records)  # logging happened, and stayed clean
    assert any("usage at 95%" in r.getMessage() for r in caplog.records)
    assert_no_secret(caplog.text)
    assert_no_secret("\n".join(repr(r.args) for r in caplog.records))


async def test_httpx_would_log_the_proof_unless_quieted(
    graph: respx.Router, client: GraphClient, caplog: pytest.LogCaptureFixture, quiet_loggers: None
) -> None:
    graph.get(f"/{PN}").respond(json={"id": PN})
    logging.getLogger("httpx").setLevel(logging.INFO)  # what a default INFO set-up does
    caplog.set_level(logging.DEBUG)
    await client.get_phone_number(PN)
    assert PROOF in caplog.text  # the hazard quiet_http_loggers exists for
    caplog.clear()
    quiet_http_loggers()
    await client.get_phone_number(PN)
    assert PROOF not in caplog.text
