"""One contract suite, two backends: respx (Meta's documented answers) and the Meta simulator (state).

Every test drives `GraphClient` through the same scenario against both; the respx backend serves the
answers Meta documents for that scenario (the reference pages and the OpenAPI spec's examples), the
simulator works them out from its state. If the client and the simulator drift apart, or either
drifts from Meta's documents, one of the two runs fails.

Answers marked UNCERTAIN are not documented by Meta; the respx side then serves the simulator's
documented choice (see `waguard.meta.simulator`), and the test pins only what the client relies on.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from tests.fixtures.meta import MetaSim
from waguard.meta.client import GraphClient
from waguard.meta.errors import (
    MetaInvalidRequest,
    MetaNotFound,
    MetaPermissionDenied,
    MetaRegistrationLocked,
    MetaThrottled,
)
from waguard.meta.ledger import RegistrationLedger
from waguard.meta.simulator.rules import appsecret_proof
from waguard.meta.simulator.seed import LimitsSeed

GRAPH = "https://graph.facebook.com"
VERSION = "v23.0"
# The demo business's ids (waguard.settings defaults); the respx answers use the same ones.
APP, BUSINESS, WABA = "1000000001", "2000000001", "3000000001"
NUMBER, SYSTEM_USER = "4000000001", "7000000001"
TRACE = "AXsgnV2Cm3ZMGF3dF_cfYIn"  # the OAS examples' fbtrace_id
SUCCESS = {"success": True}


def envelope(message: str, code: int, type_: str = "OAuthException", **extra: Any) -> dict[str, Any]:
    """Meta's error envelope."""
    return {"error": {"message": message, "type": type_, "code": code, **extra, "fbtrace_id": TRACE}}


# Documented answers (reference meta-graph-api.md sections 1-7, OAS examples, Graph error pages).
LOCKED_133016 = envelope("(#133016) Account register deregister rate limit exceeded", 133016)
BAD_PROOF = envelope("Invalid appsecret_proof provided in the API argument", 100, "GraphMethodException")
NOT_FOUND = envelope(
    "Unsupported get request. Object with ID '123456789' does not exist, cannot be loaded due to missing "
    "permissions, or does not support this operation.", 100, "GraphMethodException", error_subcode=33,
)  # fmt: skip
APP_LIMIT = envelope("(#4) Application request limit reached", 4, is_transient=True)
# UNCERTAIN: Meta documents the rule (DISABLED templates cannot be deleted), not the answer.
DISABLED = envelope("Invalid parameter", 100, error_user_title="Message template can't be deleted",
                    error_user_msg="Disabled templates can't be deleted.")  # fmt: skip


def token_data(user_id: str, *, valid: bool, token_type: str = "USER") -> dict[str, Any]:
    """debug_token `data` as Meta's debug_token page shows it."""
    data: dict[str, Any] = {
        "app_id": APP, "type": token_type, "application": "Jasper's Market Bot", "data_access_expires_at": 0,
        "expires_at": 0, "is_valid": valid, "issued_at": 1767225600,
        "scopes": ["whatsapp_business_management"],
        "granular_scopes": [{"scope": "whatsapp_business_management", "target_ids": [WABA]}],
        "user_id": user_id,
    }  # fmt: skip
    if not valid:
        message = "Error validating access token: The session is invalid because the user logged out."
        data["error"] = {"code": 190, "message": message, "subcode": 467}
    return {"data": data}


def templates_page(*rows: tuple[str, str, str, str]) -> dict[str, Any]:
    """A message_templates page in the OAS example's shape: (id, name, language, status) rows."""
    return {"data": [
        {"id": i, "name": n, "language": lang, "status": s, "category": "UTILITY", "components": []}
        for i, n, lang, s in rows
    ]}  # fmt: skip


def assigned_page(*users: tuple[str, str]) -> dict[str, Any]:
    """assigned_users in the OAS example's shape."""
    return {"data": [{"id": i, "name": n, "tasks": ["MANAGE"]} for i, n in users]}


# ---- the two backends -----------------------------------------------------------------------------


@dataclass
class Backend:
    """What a contract test needs, whichever side answers."""

    name: str
    token: SecretStr
    app_secret: SecretStr
    tmp_path: Path
    router: respx.Router | None = None
    sim: MetaSim | None = None

    @property
    def base_url(self) -> str:
        return self.sim.url if self.sim else GRAPH

    def client(self, **overrides: Any) -> GraphClient:
        """A GraphClient on this backend: no retries, no real sleeping, a fresh ledger."""

        async def no_sleep(_seconds: float) -> None:
            return None

        transport = httpx.MockTransport(self.router.handler) if self.router else None
        options: dict[str, Any] = {
            "base_url": self.base_url, "version": VERSION, "token": self.token, "app_secret": self.app_secret,
            "transport": transport, "max_retries": 0, "sleep": no_sleep,
            "ledger": RegistrationLedger(self.tmp_path / "ledger.sqlite3"),
        }  # fmt: skip
        options.update(overrides)
        return GraphClient(**options)

    def unguarded_client(self) -> GraphClient:
        """A client whose own registration ledger never refuses, so Meta's (or the simulator's) 72 h
        limit is what the test meets. GraphClient refuses register/deregister without a ledger, so
        this one gets a real ledger whose clock jumps 73 h per reservation.
        """
        jumps = itertools.count(start=1_000_000_000, step=73 * 3600)
        ledger = RegistrationLedger(self.tmp_path / "unguarded.sqlite3")
        return self.client(ledger=ledger, clock=lambda: float(next(jumps)))

    def on_respx(self, install: Callable[[respx.Router], None]) -> None:
        """Install the documented answers of a scenario (nothing to do on the simulator)."""
        if self.router is not None:
            install(self.router)

    def pin(self) -> SecretStr:
        """The number's two-step PIN."""
        return self.sim.pin(NUMBER) if self.sim else SecretStr("123456")

    def leaked_token(self) -> tuple[str, SecretStr]:
        """(id, value) of a second token, an admin's user token (the one that 'leaked')."""
        if self.sim is None:
            return "tok-leaked", SecretStr("EAAGleakedtokenleakedtokenleaked0123")
        issued = self.sim.admin.post("/_sim/tokens", json={"user_id": "6000000002", "type": "USER",
                                                           "scopes": ["whatsapp_business_management"]}).json()
        return issued["id"], SecretStr(issued["access_token"])

    def revoke_in_business_settings(self, token_id: str) -> None:
        """The UI step 'Revoke token'; on respx the next documented answer already says revoked."""
        if self.sim is not None:
            self.sim.admin.post("/_sim/tokens/revoke", json={"token_id": token_id}).raise_for_status()


@pytest.fixture(params=["respx", "simulator"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The same scenario served by respx routes and by the simulator."""
    if request.param == "simulator":
        meta_sim: MetaSim = request.getfixturevalue("meta_sim")
        yield Backend("simulator", meta_sim.token, meta_sim.app_secret, tmp_path, sim=meta_sim)
        return
    router = respx.Router(base_url=f"{GRAPH}/{VERSION}", assert_all_called=True)
    yield Backend("respx", SecretStr("EAAGcontracttokencontracttoken0123"), SecretStr("contract-app-secret"),
                  tmp_path, router=router)  # fmt: skip
    router.assert_all_called()


# ---- scenarios ------------------------------------------------------------------------------------


async def test_debug_token_valid_then_revoked(backend: Backend) -> None:
    token_id, leaked = backend.leaked_token()
    backend.on_respx(lambda r: r.get("/debug_token").mock(side_effect=[
        httpx.Response(200, json=token_data("6000000002", valid=True)),
        httpx.Response(200, json=token_data("6000000002", valid=False)),
    ]))  # fmt: skip
    async with backend.client() as graph:
        before = await graph.debug_token(leaked)
        backend.revoke_in_business_settings(token_id)
        after = await graph.debug_token(leaked)
    assert (before.is_valid, after.is_valid) == (True, False)
    assert before.user_id == after.user_id == "6000000002" and before.app_id == APP
    assert "whatsapp_business_management" in before.scopes


async def test_deregister_succeeds(backend: Backend) -> None:
    ok = httpx.Response(200, json=SUCCESS)
    backend.on_respx(lambda r: r.post(f"/{NUMBER}/deregister").mock(return_value=ok))
    async with backend.client() as graph:
        await graph.deregister_phone_number(NUMBER)
    if backend.sim:
        assert not backend.sim.sim.numbers[NUMBER].registered


async def test_eleventh_register_or_deregister_in_72h_is_locked_with_133016(backend: Backend) -> None:
    def install(r: respx.Router) -> None:
        r.post(f"/{NUMBER}/deregister").mock(side_effect=[httpx.Response(200, json=SUCCESS)] * 5
                                             + [httpx.Response(400, json=LOCKED_133016)])  # fmt: skip
        r.post(f"/{NUMBER}/register").mock(side_effect=[httpx.Response(200, json=SUCCESS)] * 5)

    backend.on_respx(install)
    async with backend.unguarded_client() as graph:
        for _ in range(5):
            await graph.deregister_phone_number(NUMBER)
            await graph.register_phone_number(NUMBER, backend.pin())
        with pytest.raises(MetaRegistrationLocked) as locked:
            await graph.deregister_phone_number(NUMBER)
    assert locked.value.code == 133016 and locked.value.fbtrace_id


async def test_delete_template_by_id_and_name_then_it_is_gone(backend: Backend) -> None:
    def install(r: respx.Router) -> None:
        r.get(f"/{WABA}/message_templates").mock(side_effect=[
            httpx.Response(200, json=templates_page(("5000000001", "order_update", "en_US", "APPROVED"),
                                                    ("5000000002", "order_update", "es_ES", "APPROVED"),
                                                    ("5000000003", "order_update", "pt_BR", "PAUSED"))),
            httpx.Response(200, json=templates_page(("5000000001", "order_update", "en_US", "APPROVED"),
                                                    ("5000000003", "order_update", "pt_BR", "PAUSED"))),
        ])  # fmt: skip
        r.delete(f"/{WABA}/message_templates", params={"hsm_id": "5000000002", "name": "order_update"}).mock(
            return_value=httpx.Response(200, json=SUCCESS))

    backend.on_respx(install)
    async with backend.client() as graph:
        before = await graph.list_templates(WABA, name="order_update")
        await graph.delete_template(WABA, "5000000002", "order_update")
        after = await graph.list_templates(WABA, name="order_update")
    assert [t.id for t in before] == ["5000000001", "5000000002", "5000000003"]
    assert [t.id for t in after] == ["5000000001", "5000000003"]


async def test_delete_of_a_disabled_template_fails(backend: Backend) -> None:
    backend.on_respx(lambda r: r.delete(f"/{WABA}/message_templates").mock(
        return_value=httpx.Response(400, json=DISABLED)))  # fmt: skip
    async with backend.client() as graph:
        with pytest.raises(MetaInvalidRequest) as refused:
            await graph.delete_template_by_name(WABA, "winter_newsletter")
    assert refused.value.code == 100 and not isinstance(refused.value, MetaNotFound)
    if backend.sim:
        assert "5000000007" in backend.sim.sim.templates


async def test_wrong_appsecret_proof_is_refused_alike(backend: Backend) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        good = appsecret_proof(backend.token.get_secret_value(), backend.app_secret.get_secret_value())
        if request.url.params.get("appsecret_proof") != good:
            return httpx.Response(400, json=BAD_PROOF)
        return httpx.Response(200, json={"id": NUMBER, "display_phone_number": "+1 555-010-0001"})

    backend.on_respx(lambda r: r.get(f"/{NUMBER}").mock(side_effect=answer))
    async with backend.client(app_secret=SecretStr("not-the-app-secret")) as graph:
        with pytest.raises(MetaInvalidRequest) as refused:
            await graph.get_phone_number(NUMBER)
    assert refused.value.code == 100 and refused.value.type == "GraphMethodException"
    assert "appsecret_proof" in refused.value.message
    async with backend.client() as graph:
        assert (await graph.get_phone_number(NUMBER)).id == NUMBER


async def test_subscribed_apps_show_the_override(backend: Backend) -> None:
    uri = "https://attacker.example/hook"
    app = {"id": APP, "link": f"https://www.facebook.com/games/?app_id={APP}", "name": "Jasper's Market Bot"}
    listed = {"data": [{"whatsapp_business_api_data": app, "override_callback_uri": uri}]}  # override page

    def install(r: respx.Router) -> None:
        r.post(f"/{WABA}/subscribed_apps").mock(return_value=httpx.Response(200, json=SUCCESS))
        r.get(f"/{WABA}/subscribed_apps").mock(return_value=httpx.Response(200, json=listed))

    backend.on_respx(install)
    async with backend.client() as graph:
        await graph.subscribe_app(WABA, uri, SecretStr("attacker-verify-token"))
        apps = await graph.list_subscribed_apps(WABA)
    assert [(a.app_id, a.override_callback_uri) for a in apps] == [(APP, uri)]


async def test_remove_assigned_user(backend: Backend) -> None:
    def install(r: respx.Router) -> None:
        r.get(f"/{WABA}/assigned_users", params={"business": BUSINESS}).mock(side_effect=[
            httpx.Response(200, json=assigned_page(("6000000001", "Ana Alves"), ("6000000003", "Eve Evans"))),
            httpx.Response(200, json=assigned_page(("6000000001", "Ana Alves"))),
        ])  # fmt: skip
        r.delete(f"/{WABA}/assigned_users").mock(side_effect=lambda req: httpx.Response(
            200 if req.content == b"user=6000000003" else 400, json=SUCCESS))  # fmt: skip

    backend.on_respx(install)
    async with backend.client() as graph:
        before = {u.id for u in await graph.list_assigned_users(WABA, BUSINESS)}
        await graph.remove_assigned_user(WABA, "6000000003")
        after = {u.id for u in await graph.list_assigned_users(WABA, BUSINESS)}
    assert "6000000003" in before and "6000000003" not in after and before - after == {"6000000003"}


async def test_unknown_object_is_not_found(backend: Backend) -> None:
    backend.on_respx(lambda r: r.get("/123456789").mock(return_value=httpx.Response(400, json=NOT_FOUND)))
    async with backend.client() as graph:
        with pytest.raises(MetaNotFound) as missing:
            await graph.get_phone_number("123456789")
    assert (missing.value.code, missing.value.subcode) == (100, 33)


async def test_spent_app_budget_throttles_with_code_4(backend: Backend) -> None:
    if backend.sim:
        seed = backend.sim.seed.model_copy(update={"limits": LimitsSeed(app_calls_per_hour=1)})
        backend.sim.admin.post("/_sim/seed", json=seed.model_dump(mode="json")).raise_for_status()
    usage = json.dumps({WABA: [{"type": "whatsapp_business_management", "call_count": 200,
                                "total_cputime": 200, "total_time": 200,
                                "estimated_time_to_regain_access": 60}]})  # fmt: skip
    backend.on_respx(lambda r: r.get(f"/{NUMBER}").mock(side_effect=[
        httpx.Response(200, json={"id": NUMBER}),
        httpx.Response(429, json=APP_LIMIT, headers={"x-business-use-case-usage": usage}),
    ]))  # fmt: skip
    async with backend.client() as graph:
        await graph.get_phone_number(NUMBER)
        with pytest.raises(MetaThrottled) as throttled:
            await graph.get_phone_number(NUMBER)
    assert throttled.value.code == 4 and (throttled.value.retry_after or 0) > 0


async def test_generated_system_user_token_is_a_valid_system_user_token(backend: Backend) -> None:
    def install(r: respx.Router) -> None:
        r.post(f"/{SYSTEM_USER}/access_tokens").mock(
            return_value=httpx.Response(200, json={"access_token": "EAAGnewsystemusertokennewsystemuser01"}))
        info = token_data(SYSTEM_USER, valid=True, token_type="SYSTEM_USER")
        r.get("/debug_token").mock(return_value=httpx.Response(200, json=info))

    backend.on_respx(install)
    async with backend.client() as graph:
        new = await graph.generate_system_user_token(SYSTEM_USER, app_id=APP,
                                                     scopes=["whatsapp_business_management"])  # fmt: skip
        info = await graph.debug_token(new)
    assert isinstance(new, SecretStr) and new.get_secret_value() != backend.token.get_secret_value()
    assert info.is_valid and info.type == "SYSTEM_USER" and info.user_id == SYSTEM_USER
    assert info.scopes == ["whatsapp_business_management"]


# ---- two Business Managers ------------------------------------------------------------------------

B_BUSINESS, B_APP, B_WABA = "2000000002", "1000000002", "3000000002"
B_ADMIN, B_PERSON = "7000000021", "6000000021"
B_TOKEN, B_SECRET = SecretStr("EAAGbusinessbtokenbusinessbtoken0123"), SecretStr("business-b-app-secret")


def with_business_b(backend: Backend) -> None:
    """A second business portfolio beside the demo one: its own app, WABA, person and system user."""
    if backend.sim is None:
        return
    from waguard.meta.simulator import seed as S

    seed = backend.sim.seed
    scopes = ["whatsapp_business_management", "business_management"]
    seed = seed.model_copy(update={
        "other_businesses": [S.BusinessSeed(id=B_BUSINESS, name="Brand B")],
        "other_apps": [S.AppSeed(id=B_APP, name="Brand B Bot", secret=B_SECRET.get_secret_value())],
        "wabas": [*seed.wabas, S.WabaSeed(id=B_WABA, name="Brand B Support", business_id=B_BUSINESS)],
        "business_users": [*seed.business_users, S.BusinessUserSeed(
            id=B_PERSON, name="Bea Brand", email="bea@b.example", role="ADMIN", business_id=B_BUSINESS)],
        "system_users": [*seed.system_users, S.SystemUserSeed(
            id=B_ADMIN, name="brand-b-waguard", role="ADMIN", business_id=B_BUSINESS)],
        "assigned_users": [*seed.assigned_users, S.AssignmentSeed(waba_id=B_WABA, user_id=B_ADMIN)],
        "tokens": [*seed.tokens, S.TokenSeed(id="tok-b", value=B_TOKEN.get_secret_value(), user_id=B_ADMIN,
                                             app_id=B_APP, scopes=scopes)],
    })  # fmt: skip
    backend.sim.admin.post("/_sim/seed", json=seed.model_dump(mode="json")).raise_for_status()


async def test_each_business_reads_only_its_own_people_and_wabas(backend: Backend) -> None:
    b_people = {"data": [{"id": B_PERSON, "name": "Bea Brand", "role": "ADMIN"}]}
    a_people = {"data": [{"id": i, "name": n, "role": r} for i, n, r in (
        ("6000000001", "Ana Alves", "ADMIN"), ("6000000002", "Ben Brooks", "ADMIN"),
        ("6000000003", "Eve Evans", "EMPLOYEE"))]}  # fmt: skip
    stranger = httpx.Response(403, json=envelope("(#200) Permissions error", 200))

    def a_people_unless_b(request: httpx.Request) -> httpx.Response:  # B's token is a stranger in A
        b_token = request.headers["authorization"].removeprefix("Bearer ") == B_TOKEN.get_secret_value()
        return stranger if b_token else httpx.Response(200, json=a_people)

    def install(r: respx.Router) -> None:
        r.get(f"/{B_BUSINESS}/business_users").mock(return_value=httpx.Response(200, json=b_people))
        r.get(f"/{B_BUSINESS}/system_users").mock(return_value=httpx.Response(200, json={
            "data": [{"id": B_ADMIN, "name": "brand-b-waguard", "role": "ADMIN"}]}))
        r.get(f"/{B_WABA}/assigned_users", params={"business": B_BUSINESS}).mock(
            return_value=httpx.Response(200, json=assigned_page((B_ADMIN, "brand-b-waguard"))))
        r.get(f"/{B_WABA}/subscribed_apps").mock(return_value=stranger)
        r.get(f"/{BUSINESS}/business_users").mock(side_effect=a_people_unless_b)

    with_business_b(backend)
    backend.on_respx(install)
    async with backend.client(token=B_TOKEN, app_secret=B_SECRET) as b:
        assert [u.id for u in await b.list_business_users(B_BUSINESS)] == [B_PERSON]
        assert [u.id for u in await b.list_system_users(B_BUSINESS)] == [B_ADMIN]
        assert [u.id for u in await b.list_assigned_users(B_WABA, B_BUSINESS)] == [B_ADMIN]
        with pytest.raises(MetaPermissionDenied):
            await b.list_business_users(BUSINESS)
    async with backend.client() as a:  # the demo business's admin system user
        assert {u.id for u in await a.list_business_users(BUSINESS)} == {"6000000001", "6000000002",
                                                                          "6000000003"}
        with pytest.raises(MetaPermissionDenied):  # B's WABA: the demo business's admin is a stranger there
            await a.list_subscribed_apps(B_WABA)
