"""GraphClient against respx routes: auth, proof and user agent on every call, paging, and the answers.

The router, the client and the constants come from tests/fixtures/meta.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import respx
from pydantic import SecretStr

from tests.fixtures.meta import (
    APP_SECRET,
    BASE,
    BUSINESS,
    INPUT_TOKEN,
    NEW_TOKEN,
    OK,
    PN,
    PROOF,
    ROOT,
    TOKEN,
    WABA,
    Sleeps,
)
from waguard.errors import ConfigError
from waguard.meta.client import GraphClient
from waguard.meta.errors import MetaUnexpectedResponse
from waguard.meta.ledger import RegistrationLedger
from waguard.settings import MetaSettings

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
