"""A run acts on its own business: a second business, with its own app, app secret, waguard token, WABA
and system users, in the Meta simulator and the registry. A leaked-secret run on it resets that app's
secret, opens that app's rotation window and rotates that business's token; a template-abuse run deletes
only its template; by the simulator's own request record, neither touches business A's ids or tokens,
and A's app secret, window and tokens are as they were.

The runs are the in-process flows on the local stack, under the playbook's Vault identity (its policy
rendered again from the registry that lists business B).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
from collections.abc import Iterator

import httpx
import pytest
import yaml
from pydantic import SecretStr

from flows.leaked_secret import leaked_secret
from flows.template_abuse import template_abuse
from tests.fixtures.stack import ROOT
from tests.flows.test_playbooks import vault_read
from tests.flows.test_second_waba import approve, lock_exists, manifest_of, next_pause

pytestmark = pytest.mark.usefixtures("local_stack")

B_APP, B_BUSINESS, B_WABA = "1000000002", "2000000002", "3000000201"
B_NUMBERS = ["4000000201", "4000000202"]
B_PHISH, B_KEEP = "5000000201", "5000000202"
B_ADMIN, B_MESSAGING = "7000000201", "7000000202"  # waguard's system user there; the consumers'
B_SECRET_PATH, B_TOKEN_PATH = "meta/brand-b/app-secret", "meta/brand-b/system-user-token"
B_MESSAGING_PATH, B_PIN_PATH = "meta/brand-b/messaging-token", "meta/brand-b/two-step-pin"
WA = ["whatsapp_business_management", "whatsapp_business_messaging"]
A_TOKENS = {"tok-system-user-1", "tok-messaging-service"}


def a_ids(state: dict) -> set[str]:
    """Business A's ids: its app, business, WABA, numbers, templates and system users."""
    ids = {"1000000001", "2000000001", "3000000001", "7000000001", "7000000002"}
    ids |= {n["id"] for n in state["phone_numbers"] if n["waba_id"] == "3000000001"}
    ids |= {t["id"] for t in state["templates"] if t["waba_id"] == "3000000001"}
    return ids


async def demo_seed_now(local_stack):  # the demo business with the credentials Vault holds now
    from waguard.local.stack import MESSAGING_TOKEN_PATH, with_messaging_service
    from waguard.meta.simulator import demo_seed

    meta = local_stack.settings.meta
    seed = with_messaging_service(
        demo_seed(app_secret=await vault_read(local_stack, meta.app_secret_path),
                  system_user_token=await vault_read(local_stack, meta.token_path)),
        await vault_read(local_stack, MESSAGING_TOKEN_PATH))
    pins = {n.id: httpx.get(f"{local_stack.meta}/_sim/phone_numbers/{n.id}/pin").json().get("pin")
            for n in seed.phone_numbers}
    return seed.model_copy(update={"phone_numbers": [
        n.model_copy(update={"two_step_pin": pins[n.id] or n.two_step_pin}) for n in seed.phone_numbers]})


async def seed_business_b(local_stack) -> None:
    from waguard.meta.simulator.seed import (
        AppSeed,
        AssignmentSeed,
        GranularScopeSeed,
        PhoneNumberSeed,
        SubscribedAppSeed,
        SystemUserSeed,
        TemplateSeed,
        TokenSeed,
        WabaSeed,
    )
    from waguard.vault.client import VaultClient

    seed = await demo_seed_now(local_stack)
    b_secret = secrets.token_hex(16)
    admin_token, messaging_token = ("EAAG" + secrets.token_urlsafe(48) for _ in range(2))
    granular = [GranularScopeSeed(scope=s, target_ids=[B_WABA]) for s in WA]
    seed = seed.model_copy(update={
        "other_apps": [AppSeed(id=B_APP, name="Brand B Bot", secret=b_secret)],
        "wabas": [*seed.wabas, WabaSeed(id=B_WABA, name="Brand B")],
        "phone_numbers": [*seed.phone_numbers, *(
            PhoneNumberSeed(id=n, waba_id=B_WABA, display_phone_number=f"+1 555-030-00{i}",
                            verified_name="Brand B", two_step_pin="654321")
            for i, n in enumerate(B_NUMBERS, 1))],
        "templates": [*seed.templates,
                      TemplateSeed(id=B_PHISH, waba_id=B_WABA, name="brandb_verify", language="en_US",
                                   components=[{"type": "BODY", "text": "Verify at https://evil.example"}]),
                      TemplateSeed(id=B_KEEP, waba_id=B_WABA, name="brandb_order", language="en_US",
                                   components=[{"type": "BODY", "text": "Your order shipped."}])],
        "system_users": [*seed.system_users,
                         SystemUserSeed(id=B_ADMIN, name="brand-b-waguard", role="ADMIN"),
                         SystemUserSeed(id=B_MESSAGING, name="brand-b-messaging", role="EMPLOYEE")],
        "assigned_users": [*seed.assigned_users,
                           AssignmentSeed(waba_id=B_WABA, user_id=B_ADMIN, tasks=["MANAGE"]),
                           AssignmentSeed(waba_id=B_WABA, user_id=B_MESSAGING, tasks=["MANAGE"])],
        "subscribed_apps": [*seed.subscribed_apps,
                            SubscribedAppSeed(waba_id=B_WABA, app_id=B_APP, app_name="Brand B Bot")],
        "tokens": [*seed.tokens,
                   TokenSeed(id="tok-b-admin", value=admin_token, user_id=B_ADMIN, app_id=B_APP,
                             scopes=[*WA, "business_management"], granular_scopes=granular),
                   TokenSeed(id="tok-b-messaging", value=messaging_token, user_id=B_MESSAGING, app_id=B_APP,
                             scopes=WA, granular_scopes=granular)],
    })
    res = httpx.post(f"{local_stack.meta}/_sim/seed", json=seed.model_dump(mode="json"))
    assert res.status_code == 200, res.text
    vault = VaultClient.from_settings(local_stack.settings.vault)
    for path, value in ((B_SECRET_PATH, b_secret), (B_TOKEN_PATH, admin_token),
                        (B_MESSAGING_PATH, messaging_token), (B_PIN_PATH, "654321")):
        await vault.write_secret(path, SecretStr(value))


def write_policies(local_stack, settings) -> None:
    """The identities' policies rendered from `settings` (its registry) into the stack's OpenBao."""
    from waguard.vault.client import VaultClient
    from waguard.vault.identities import render_policies, role_name

    hv = VaultClient.from_settings(local_stack.settings.vault).hvac_client
    for identity, text in render_policies(settings).items():
        hv.sys.create_or_update_policy(role_name(identity), text)


@pytest.fixture(scope="module")
def business_b(local_stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    runbooks = tmp_path_factory.mktemp("runbooks") / "runbooks"
    shutil.copytree(ROOT / "runbooks", runbooks)
    registry = yaml.safe_load((runbooks / "businesses.yaml").read_text())
    registry["businesses"].append({
        "business_id": B_BUSINESS, "app_id": B_APP, "app_secret_path": B_SECRET_PATH,
        "token_path": B_TOKEN_PATH,
        "wabas": [{"waba_id": B_WABA, "pin_path": B_PIN_PATH, "phone_number_ids": B_NUMBERS,
                   "tokens": [{"path": B_MESSAGING_PATH, "system_user_id": B_MESSAGING, "scopes": WA}]}]})
    (runbooks / "businesses.yaml").write_text(yaml.safe_dump(registry))
    asyncio.run(seed_business_b(local_stack))
    write_policies(local_stack, local_stack.settings.model_copy(update={"runbooks_dir": runbooks}))
    saved = os.environ.get("WAGUARD_RUNBOOKS_DIR")
    os.environ["WAGUARD_RUNBOOKS_DIR"] = str(runbooks)
    try:
        yield local_stack
    finally:
        os.environ["WAGUARD_RUNBOOKS_DIR"] = saved or str(ROOT / "runbooks")
        write_policies(local_stack, local_stack.settings)
        seed = asyncio.run(demo_seed_now(local_stack))  # business B leaves the simulator again
        httpx.post(f"{local_stack.meta}/_sim/seed", json=seed.model_dump(mode="json")).raise_for_status()


def only_business_b_touched(stack, first_ids: set[str]) -> list[dict]:
    requests = stack.meta_requests()
    assert requests, "the run made no Graph call at all"
    strays = [r for r in requests
              if any(i in json.dumps([r["path"], r["query"], r["body"]]) for i in first_ids)]
    assert strays == [], strays
    assert not {r.get("token_id") for r in requests} & A_TOKENS  # never with business A's tokens
    return requests


def assert_named_business_b(stack, result: dict) -> None:
    assert result["status"] == "contained", result
    for bundle in result["evidence"]:
        manifest = manifest_of(bundle)
        assert (manifest["waba_id"], manifest["business_id"]) == (B_WABA, B_BUSINESS), manifest
    heads = [json.dumps({k: v for k, v in m.items() if k != "replies"})
             for messages in stack.slack_messages().values() for m in messages]
    heads = [h for h in heads if result["incident_id"] in h]
    assert heads and all(f"WABA {B_WABA}" in h for h in heads), heads


async def test_leaked_secret_on_business_b_rotates_b_apps_secret_and_token_only(business_b) -> None:
    from waguard.meta.client import GraphClient
    from waguard.vault.client import VaultClient

    stack = business_b
    meta, intake = stack.settings.meta, stack.settings.intake
    vault = VaultClient.from_settings(stack.settings.vault)
    first_ids = a_ids(stack.meta_state())
    a_secret = await vault_read(stack, meta.app_secret_path)
    a_messaging = await vault_read(stack, "meta/messaging-token")
    a_window = (await vault.read_metadata(intake.rotation_window_path)
                if await _exists(vault, intake.rotation_window_path) else None)
    old_b_secret = await vault_read(stack, B_SECRET_PATH)
    old_messaging = await vault_read(stack, B_MESSAGING_PATH)
    httpx.delete(f"{stack.meta}/_sim/requests")
    run = asyncio.create_task(leaked_secret(incident_id="INC-B-L", waba_id=B_WABA, leaked="both",
                                            initiator="intake:github"))
    answered: set[tuple[str, str]] = set()
    await approve("INC-B-L", "U0ONCALL", answered=answered)
    await next_pause("INC-B-L", answered)  # the manual step: B's App Dashboard, then Vault
    reset = httpx.post(f"{stack.meta}/_sim/app/reset-secret", params={"app_id": B_APP})
    new_b_secret = reset.json()["app_secret"]
    await vault.write_secret(B_SECRET_PATH, SecretStr(new_b_secret))
    result = await run
    only_business_b_touched(stack, first_ids)
    assert await lock_exists("leaked_secret", B_WABA)
    assert_named_business_b(stack, result)
    # B's app: its window opened (for the leaked version), beside A's, which is as it was.
    window = json.loads(await vault_read(stack, f"{intake.rotation_window_path}/{B_APP}"))
    assert window["previous_version"] < (await vault.read_secret(B_SECRET_PATH)).version
    if a_window is None:
        assert not await _exists(vault, intake.rotation_window_path)
    else:
        now = await vault.read_metadata(intake.rotation_window_path)
        assert now.current_version == a_window.current_version
    # A's app secret: the same in Vault and at Meta (A's token with it still works).
    assert await vault_read(stack, meta.app_secret_path) == a_secret
    a_graph = GraphClient(base_url=meta.graph_url, version=meta.graph_version,
                          token=SecretStr(await vault_read(stack, meta.token_path)),
                          app_secret=SecretStr(a_secret), max_retries=0)
    b_graph = GraphClient(base_url=meta.graph_url, version=meta.graph_version,
                          token=SecretStr(await vault_read(stack, B_TOKEN_PATH)),
                          app_secret=SecretStr(new_b_secret), max_retries=0)
    try:
        assert (await a_graph.debug_token(SecretStr(a_messaging))).is_valid is True
        await a_graph.list_phone_numbers("3000000001")
        # B's consumers' token: the leaked one dead, the new one (issued for B's app) alive.
        new_messaging = await vault_read(stack, B_MESSAGING_PATH)
        assert new_messaging != old_messaging
        assert (await b_graph.debug_token(SecretStr(old_messaging))).is_valid is False
        fresh = await b_graph.debug_token(SecretStr(new_messaging))
        assert fresh.is_valid is True and fresh.app_id == B_APP
    finally:
        await a_graph.aclose()
        await b_graph.aclose()
    assert old_b_secret != new_b_secret


async def test_template_abuse_on_business_b_deletes_only_its_template(business_b) -> None:
    stack = business_b
    first_ids = a_ids(stack.meta_state())
    before = [t for t in stack.meta_state()["templates"] if t["waba_id"] == "3000000001"]
    httpx.delete(f"{stack.meta}/_sim/requests")
    run = asyncio.create_task(template_abuse(incident_id="INC-B-T", waba_id=B_WABA,
                                             template_names=["brandb_verify"], initiator="intake:meta"))
    await approve("INC-B-T", "U0ONCALL")
    result = await run
    only_business_b_touched(stack, first_ids)
    assert_named_business_b(stack, result)
    templates = {t["id"]: t for t in stack.meta_state()["templates"]}
    assert B_PHISH not in templates and B_KEEP in templates
    assert [t for t in templates.values() if t["waba_id"] == "3000000001"] == before


async def _exists(vault, path: str) -> bool:
    from waguard.vault.errors import VaultSecretNotFound

    try:
        await vault.read_metadata(path)
        return True
    except VaultSecretNotFound:
        return False
