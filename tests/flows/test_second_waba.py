"""Every run acts on its own WABA: each playbook, run in-process on the local stack for a second WABA of
the business, touches only that WABA's objects (by the Meta simulator's own request record), waits on a
lock named after it, and leaves evidence whose manifest names it; the first WABA is left as it was.

The simulator is re-seeded with the demo business plus a second WABA (its numbers, templates, a foreign
webhook override, and its own messaging system user whose token lives at its own Vault path), using the
credentials Vault holds now; the business registry the runs read is a copy of runbooks/ with that WABA
added.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import tarfile
from pathlib import Path

import httpx
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from pydantic import SecretStr

from flows.account_takeover import account_takeover
from flows.leaked_secret import leaked_secret
from flows.template_abuse import template_abuse
from tests.fixtures.stack import ROOT
from tests.flows.test_playbooks import vault_read

pytestmark = pytest.mark.usefixtures("local_stack")

FIRST, SECOND, BUSINESS = "3000000001", "3000000002", "2000000001"
NUMBERS = ["4000000021", "4000000022"]
PHISH, KEEP = "5000000021", "5000000022"
SYSTEM_USER = "7000000022"
TOKEN_PATH, PIN_PATH = "meta/wholesale/messaging-token", "meta/wholesale/two-step-pin"
SCOPES = ["whatsapp_business_management", "whatsapp_business_messaging"]


async def next_pause(incident_id: str, answered: set[tuple[str, str]]) -> str:
    """The incident's run, once paused at a pause not answered yet (a resumed run's next pause has a
    new key, so no waiting by time is needed)."""
    async with get_client() as client:
        for _ in range(1200):
            for run in await client.read_flow_runs(flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.PAUSED])))):
                key = run.state.state_details.pause_key if run.state else None
                mine = run.parameters.get("incident_id") == incident_id
                if mine and key and (str(run.id), key) not in answered:
                    answered.add((str(run.id), key))
                    return str(run.id)
            await asyncio.sleep(0.1)
    raise AssertionError(f"no run of {incident_id} paused")


async def approve(incident_id: str, *approvers: str, answered: set[tuple[str, str]] | None = None) -> None:
    answered = set() if answered is None else answered
    for who in approvers:
        run_id = await next_pause(incident_id, answered)
        async with get_client() as client:
            res = await client.resume_flow_run(run_id, run_input={"approver": who, "decision": "approve"})
        assert res.status.value == "ACCEPT", res.details


def first_waba_ids(state: dict) -> set[str]:
    """Ids that belong to the first WABA alone: it, its numbers, its templates, its messaging system user."""
    ids = {FIRST, "7000000002"}
    ids |= {n["id"] for n in state["phone_numbers"] if n["waba_id"] == FIRST}
    ids |= {t["id"] for t in state["templates"] if t["waba_id"] == FIRST}
    return ids


async def seed_second_waba(local_stack) -> None:
    from waguard.local.stack import MESSAGING_TOKEN_PATH, with_messaging_service
    from waguard.meta.simulator import demo_seed
    from waguard.meta.simulator.seed import (
        AssignmentSeed,
        PhoneNumberSeed,
        SubscribedAppSeed,
        SystemUserSeed,
        TemplateSeed,
        TokenSeed,
        WabaSeed,
    )
    from waguard.vault.client import VaultClient

    meta = local_stack.settings.meta
    seed = with_messaging_service(
        demo_seed(app_secret=await vault_read(local_stack, meta.app_secret_path),
                  system_user_token=await vault_read(local_stack, meta.token_path)),
        await vault_read(local_stack, MESSAGING_TOKEN_PATH))
    # The demo numbers keep the PINs they have now (earlier tests and Vault agree on them).
    pins = {n.id: httpx.get(f"{local_stack.meta}/_sim/phone_numbers/{n.id}/pin").json().get("pin")
            for n in seed.phone_numbers}
    seed = seed.model_copy(update={"phone_numbers": [
        n.model_copy(update={"two_step_pin": pins[n.id] or n.two_step_pin}) for n in seed.phone_numbers]})
    wholesale_token = "EAAG" + secrets.token_urlsafe(48)
    ours = seed.tokens[0]  # waguard's own token: granted on the second WABA too
    granular = [g.model_copy(update={"target_ids": [*g.target_ids, SECOND]}) if FIRST in g.target_ids else g
                for g in ours.granular_scopes]
    seed = seed.model_copy(update={
        "wabas": [*seed.wabas, WabaSeed(id=SECOND, name="Jasper's Wholesale")],
        "phone_numbers": [*seed.phone_numbers, *(
            PhoneNumberSeed(id=n, waba_id=SECOND, display_phone_number=f"+1 555-020-00{i}",
                            verified_name="Jasper's Wholesale", two_step_pin="123456")
            for i, n in enumerate(NUMBERS, 21))],
        "templates": [*seed.templates,
                      TemplateSeed(id=PHISH, waba_id=SECOND, name="wholesale_verify", language="en_US",
                                   components=[{"type": "BODY", "text": "Verify at https://evil.example"}]),
                      TemplateSeed(id=KEEP, waba_id=SECOND, name="wholesale_order", language="en_US",
                                   components=[{"type": "BODY", "text": "Your order shipped."}])],
        "system_users": [*seed.system_users, SystemUserSeed(id=SYSTEM_USER, name="wholesale-messaging",
                                                            role="EMPLOYEE", created_by="6000000001")],
        "assigned_users": [*seed.assigned_users,
                           AssignmentSeed(waba_id=SECOND, user_id="6000000001", tasks=["MANAGE"]),
                           AssignmentSeed(waba_id=SECOND, user_id="6000000003", tasks=["MANAGE"]),
                           AssignmentSeed(waba_id=SECOND, user_id="7000000001", tasks=["MANAGE"]),
                           AssignmentSeed(waba_id=SECOND, user_id=SYSTEM_USER, tasks=["MANAGE"])],
        "subscribed_apps": [*seed.subscribed_apps,
                            SubscribedAppSeed(waba_id=SECOND, app_id=seed.app.id, app_name=seed.app.name,
                                              override_callback_uri="https://attacker.example/hook")],
        "tokens": [ours.model_copy(update={"granular_scopes": granular}), *seed.tokens[1:],
                   TokenSeed(id="tok-wholesale", value=wholesale_token, user_id=SYSTEM_USER, scopes=SCOPES)],
    })
    res = httpx.post(f"{local_stack.meta}/_sim/seed", json=seed.model_dump(mode="json"))
    assert res.status_code == 200, res.text
    vault = VaultClient.from_settings(local_stack.settings.vault)
    await vault.write_secret(TOKEN_PATH, SecretStr(wholesale_token))


@pytest.fixture(scope="module")
def second_waba(local_stack, tmp_path_factory: pytest.TempPathFactory):
    """The simulator seeded with a second WABA; the runs read a registry that lists it."""
    runbooks = tmp_path_factory.mktemp("runbooks") / "runbooks"
    shutil.copytree(ROOT / "runbooks", runbooks)
    registry = yaml.safe_load((runbooks / "businesses.yaml").read_text())
    registry["businesses"][0]["wabas"].append({
        "waba_id": SECOND, "pin_path": PIN_PATH,
        "tokens": [{"path": TOKEN_PATH, "system_user_id": SYSTEM_USER, "scopes": SCOPES}]})
    (runbooks / "businesses.yaml").write_text(yaml.safe_dump(registry))
    asyncio.run(seed_second_waba(local_stack))
    saved = os.environ.get("WAGUARD_RUNBOOKS_DIR")
    os.environ["WAGUARD_RUNBOOKS_DIR"] = str(runbooks)
    try:
        yield local_stack
    finally:
        os.environ["WAGUARD_RUNBOOKS_DIR"] = saved or str(ROOT / "runbooks")


def only_second_waba_touched(local_stack, first_ids: set[str]) -> list[dict]:
    requests = local_stack.meta_requests()
    assert requests, "the run made no Graph call at all"
    strays = [r for r in requests
              if any(i in json.dumps([r["path"], r["query"], r["body"]]) for i in first_ids)]
    assert strays == [], strays
    return requests


async def lock_exists(playbook: str, waba: str) -> bool:
    async with get_client() as client:
        limits = await client.read_global_concurrency_limits(limit=200)
    return f"waguard:{playbook}:{waba}" in {lim.name for lim in limits}


def manifest_of(bundle: str) -> dict:
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return json.loads(member.read())


def assert_run_named_second_waba(local_stack, result: dict) -> None:
    assert result["status"] == "contained", result
    assert len(result["evidence"]) == 2
    for bundle in result["evidence"]:
        manifest = manifest_of(bundle)
        assert (manifest["waba_id"], manifest["business_id"]) == (SECOND, BUSINESS), manifest
    # The incident's Slack thread (its head message) names the WABA.
    heads = [json.dumps({k: v for k, v in m.items() if k != "replies"})
             for messages in local_stack.slack_messages().values() for m in messages]
    heads = [h for h in heads if result["incident_id"] in h]
    assert heads and all(f"WABA {SECOND}" in h for h in heads), heads
    # The open record on the timeline names the WABA (the intake's metrics read it).
    from waguard.playbook.timeline import IncidentRecord

    opened = IncidentRecord(local_stack.settings.incidents_dir, result["incident_id"]).last("open")
    assert opened is not None and opened.data["waba_id"] == SECOND


async def test_template_abuse_on_the_second_waba(second_waba) -> None:
    stack = second_waba
    first_ids = first_waba_ids(stack.meta_state())
    before = [t for t in stack.meta_state()["templates"] if t["waba_id"] == FIRST]
    httpx.delete(f"{stack.meta}/_sim/requests")
    run = asyncio.create_task(template_abuse(incident_id="INC-W2-T", waba_id=SECOND,
                                             template_names=["wholesale_verify"], initiator="U0SECLEAD"))
    await approve("INC-W2-T", "U0ONCALL")
    result = await run
    only_second_waba_touched(stack, first_ids)
    assert await lock_exists("template_abuse", SECOND)
    assert_run_named_second_waba(stack, result)
    templates = {t["id"]: t for t in stack.meta_state()["templates"]}
    assert PHISH not in templates and KEEP in templates
    assert [t for t in templates.values() if t["waba_id"] == FIRST] == before


async def test_leaked_secret_on_the_second_waba_rotates_that_wabas_token(second_waba) -> None:
    from waguard.meta.client import GraphClient

    stack = second_waba
    meta = stack.settings.meta
    first_ids = first_waba_ids(stack.meta_state())
    old = await vault_read(stack, TOKEN_PATH)
    first_token = await vault_read(stack, "meta/messaging-token")
    httpx.delete(f"{stack.meta}/_sim/requests")
    # No token path or system user given: the registry's token for this WABA is the one that leaked.
    run = asyncio.create_task(leaked_secret(incident_id="INC-W2-L", waba_id=SECOND, leaked="both",
                                            initiator="intake:github"))
    answered: set[tuple[str, str]] = set()
    await approve("INC-W2-L", "U0ONCALL", answered=answered)
    # The manual step waits: what a person does in the App Dashboard, then in a shell.
    await next_pause("INC-W2-L", answered)
    from waguard.vault.client import VaultClient

    reset = httpx.post(f"{stack.meta}/_sim/app/reset-secret").json()["app_secret"]
    await VaultClient.from_settings(stack.settings.vault).write_secret(meta.app_secret_path, SecretStr(reset))
    result = await run
    only_second_waba_touched(stack, first_ids)
    assert await lock_exists("leaked_secret", SECOND)
    assert_run_named_second_waba(stack, result)
    new = await vault_read(stack, TOKEN_PATH)
    g = GraphClient(base_url=meta.graph_url, version=meta.graph_version,
                    token=SecretStr(await vault_read(stack, meta.token_path)),
                    app_secret=SecretStr(await vault_read(stack, meta.app_secret_path)), max_retries=0)
    try:
        assert (await g.debug_token(SecretStr(old))).is_valid is False
        assert (await g.debug_token(SecretStr(new))).is_valid is True
        # The first WABA's messaging token (system user 7000000002) was not touched.
        assert (await g.debug_token(SecretStr(first_token))).is_valid is True
    finally:
        await g.aclose()


async def test_account_takeover_on_the_second_waba(second_waba) -> None:
    stack = second_waba
    state = stack.meta_state()
    first_ids = first_waba_ids(state)
    first_numbers = [n for n in state["phone_numbers"] if n["waba_id"] == FIRST]
    first_apps = [a for a in state["subscribed_apps"] if a["waba_id"] == FIRST]
    httpx.delete(f"{stack.meta}/_sim/requests")
    run = asyncio.create_task(account_takeover(incident_id="INC-W2-A", waba_id=SECOND,
                                               initiator="intake:meta"))
    await approve("INC-W2-A", "U0ONCALL", "U0SECLEAD")
    result = await run
    requests = only_second_waba_touched(stack, first_ids)
    assert await lock_exists("account_takeover", SECOND)
    assert_run_named_second_waba(stack, result)
    state = stack.meta_state()
    second = {n["id"]: n for n in state["phone_numbers"] if n["waba_id"] == SECOND}
    assert all(not second[n]["registered"] for n in NUMBERS)
    assert [n for n in state["phone_numbers"] if n["waba_id"] == FIRST] == first_numbers
    assert [a for a in state["subscribed_apps"] if a["waba_id"] == FIRST] == first_apps
    assert not any(a.get("override_callback_uri") for a in state["subscribed_apps"] if a["waba_id"] == SECOND)
    pin = httpx.get(f"{stack.meta}/_sim/phone_numbers/{NUMBERS[0]}/pin").json()["pin"]
    assert pin == await vault_read(stack, PIN_PATH)
    revoked = [r for r in requests if r["method"] == "DELETE" and r["path"].endswith("/access_tokens")]
    assert revoked and all(SYSTEM_USER in r["path"] for r in revoked)


async def test_a_waba_missing_from_the_registry_is_refused_before_anything(second_waba) -> None:
    stack = second_waba
    httpx.delete(f"{stack.meta}/_sim/requests")
    from waguard.errors import ConfigError

    with pytest.raises(ConfigError, match="3000000099 is not in"):
        await leaked_secret(incident_id="INC-W2-X", waba_id="3000000099", leaked="token")
    assert stack.meta_requests() == []
    assert not (Path(stack.settings.incidents_dir) / "INC-W2-X").exists()  # no incident was opened
