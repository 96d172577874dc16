"""Each playbook end to end on the local stack: a real Prefect server, real OpenBao, the Meta and
Slack simulators as HTTP servers. Approvals come from a separate Prefect client, as the UI or the
intake would send them; outcomes are checked by reading the simulators and Vault, not the flow's word."""

import asyncio
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

from flows.account_takeover import account_takeover
from flows.leaked_secret import leaked_secret
from flows.template_abuse import template_abuse

pytestmark = pytest.mark.usefixtures("local_stack")


Answered = set[tuple[UUID, str]]  # (run id, pause key) of the pauses a test has answered


async def wait_paused(flow_name: str, incident_id: str, answered: Answered) -> UUID:
    """The incident's run once it is paused at a pause this test has not answered yet.

    A resumed run stays PAUSED for a moment, and the next pause of the same run has a new key: the
    key tells a new question from the one just answered, so no waiting by time is needed."""
    async with get_client() as client:
        for _ in range(600):
            for run in await client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.PAUSED])))):
                key = run.state.state_details.pause_key if run.state else None
                if run.parameters.get("incident_id") == incident_id and key and (run.id, key) not in answered:
                    answered.add((run.id, key))
                    return run.id
            await asyncio.sleep(0.1)
    raise AssertionError(f"no {flow_name} run of {incident_id} paused")


async def approve(flow_name: str, incident_id: str, *approvers: str, answered: Answered | None = None) -> None:
    """Each approver answers the run's next unanswered pause, as separate people in the UI would."""
    answered = set() if answered is None else answered
    for who in approvers:
        run_id = await wait_paused(flow_name, incident_id, answered)
        async with get_client() as client:
            res = await client.resume_flow_run(run_id, run_input={"approver": who, "decision": "approve"})
        assert res.status.value == "ACCEPT", res.details


def templates(local_stack) -> dict[str, dict]:
    return {t["id"]: t for t in local_stack.meta_state()["templates"]}


async def test_template_abuse_deletes_the_phishing_template(local_stack) -> None:
    assert "5000000008" in templates(local_stack)
    httpx.delete(f"{local_stack.meta}/_sim/requests")   # count this run's calls only (the stack is shared)
    run = asyncio.create_task(template_abuse(incident_id="INC-T1", template_names=["account_security_notice"],
                                             initiator="U0SECLEAD", poll_interval_s=1))
    await approve("template-abuse", "INC-T1", "U0ONCALL")
    result = await run
    assert result["status"] == "contained"
    after = templates(local_stack)
    assert "5000000008" not in after          # gone, by the simulator's own state
    assert "5000000001" in after              # other templates untouched
    deletes = [r for r in local_stack.meta_requests() if r["method"] == "DELETE"]
    assert len(deletes) == 1 and "hsm_id" in str(deletes[0])


async def vault_read(local_stack, path: str, version: int | None = None) -> str:
    from waguard.vault.client import VaultClient

    vault = VaultClient.from_settings(local_stack.settings.vault)
    return (await vault.read_secret(path, version=version)).value.get_secret_value()


async def responder_resets_app_secret(local_stack, answered: Answered) -> None:
    """What a person does in the App Dashboard, then in a shell: the simulator's admin API and Vault."""
    from pydantic import SecretStr

    from waguard.vault.client import VaultClient

    await wait_paused("leaked-secret", "INC-L1", answered)   # the manual step is waiting (not the approval)
    new = httpx.post(f"{local_stack.meta}/_sim/app/reset-secret").json()["app_secret"]
    vault = VaultClient.from_settings(local_stack.settings.vault)
    await vault.write_secret(local_stack.settings.meta.app_secret_path, SecretStr(new))


async def test_leaked_secret_rotates_and_verifies(local_stack) -> None:
    from pydantic import SecretStr

    from waguard.meta.client import GraphClient
    from waguard.meta.errors import MetaError

    meta = local_stack.settings.meta
    old_secret = await vault_read(local_stack, meta.app_secret_path)
    old_token = await vault_read(local_stack, "meta/messaging-token")
    run = asyncio.create_task(leaked_secret(incident_id="INC-L1", initiator="intake:github", poll_interval_s=1))
    answered: Answered = set()
    await approve("leaked-secret", "INC-L1", "U0ONCALL", answered=answered)
    await responder_resets_app_secret(local_stack, answered)
    result = await run
    assert result["status"] == "contained", result
    admin_token = SecretStr(await vault_read(local_stack, meta.token_path))
    new_secret = await vault_read(local_stack, meta.app_secret_path)
    # The old secret's appsecret_proof is rejected, the new one's accepted: asked of the simulator directly.
    for secret, works in ((old_secret, False), (new_secret, True)):
        g = GraphClient(base_url=meta.graph_url, version=meta.graph_version, token=admin_token,
                        app_secret=SecretStr(secret), max_retries=0)
        try:
            await g.list_phone_numbers(meta.waba_id)
            assert works
        except MetaError:
            assert not works
        finally:
            await g.aclose()
    g = GraphClient(base_url=meta.graph_url, version=meta.graph_version, token=admin_token,
                    app_secret=SecretStr(new_secret), max_retries=0)
    new_token = await vault_read(local_stack, "meta/messaging-token")
    assert new_token != old_token
    assert (await g.debug_token(SecretStr(old_token))).is_valid is False
    assert (await g.debug_token(SecretStr(new_token))).is_valid is True
    await g.aclose()
    # No secret value in Slack.
    slack_text = str(local_stack.slack_messages())
    for value in (old_secret, new_secret, old_token, new_token, admin_token.get_secret_value()):
        assert value not in slack_text


async def test_account_takeover_leaves_only_named_admins(local_stack) -> None:
    meta = local_stack.settings.meta
    # The stranger: the seed's employee Eve, whom only the named-admin rule removes.
    state = local_stack.meta_state()
    assert any(u["id"] == "6000000003" for u in state["business_users"])
    run = asyncio.create_task(account_takeover(incident_id="INC-A1", phone_number_ids=["4000000001"],
                                               initiator="intake:meta", poll_interval_s=1))
    await approve("account-takeover", "INC-A1", "U0ONCALL", "U0SECLEAD")   # quorum 2
    result = await run
    assert result["status"] == "contained", result
    state = local_stack.meta_state()
    assert {u["id"] for u in state["business_users"]} == {"6000000001", "6000000002"}
    number = next(n for n in state["phone_numbers"] if n["id"] == "4000000001")
    assert number["registered"] is False
    pin = httpx.get(f"{local_stack.meta}/_sim/phone_numbers/4000000001/pin").json()["pin"]
    assert pin == await vault_read(local_stack, "meta/two-step-pin")


async def test_plan_mode_makes_no_mutating_call(local_stack) -> None:
    httpx.delete(f"{local_stack.meta}/_sim/requests")
    result = await account_takeover(incident_id="INC-P1", plan=True, poll_interval_s=1)
    assert result["status"] == "planned"
    calls = {c["call"].split(" ")[0] for c in result["planned_calls"]}
    assert calls & {"POST", "DELETE"}
    methods = {r["method"] for r in local_stack.meta_requests()}
    assert methods == {"GET"}, methods


async def test_a_rerun_of_the_same_incident_repeats_no_destructive_call(local_stack) -> None:
    """Crash-and-rerun: the second run for INC-R1 finds the approval and the deletion already done."""
    httpx.delete(f"{local_stack.meta}/_sim/requests")
    first = asyncio.create_task(template_abuse(incident_id="INC-R1", template_names=["spring_sale"],
                                               statuses=["APPROVED"], poll_interval_s=1))
    await approve("template-abuse", "INC-R1", "U0ONCALL")
    assert (await first)["status"] == "contained"
    again = await template_abuse(incident_id="INC-R1", template_names=["spring_sale"], statuses=["APPROVED"],
                                 poll_interval_s=1)   # no approval needed: it would hang if it asked
    assert again["status"] == "contained"
    deletes = [r for r in local_stack.meta_requests() if r["method"] == "DELETE"]
    assert len(deletes) == 1, deletes


async def test_no_secret_reaches_prefect_slack_or_the_meta_record(local_stack) -> None:
    """After the playbooks above ran: every value Vault holds (all versions) is searched for, raw and
    encoded, in Prefect's parameters, run inputs, logs and artifacts and in the simulators' records."""
    from waguard.drills.secret_search import prefect_texts, scan_text
    from waguard.vault.client import VaultClient

    vault = VaultClient.from_settings(local_stack.settings.vault)
    secrets = [s.get_secret_value() for s in await vault.read_all_secret_values(
        ["meta/", "slack/", "intake/", "waguard/"])]
    assert len(secrets) >= 8  # the stack's credentials, plus what the playbooks rotated
    async with get_client() as client:
        texts = await prefect_texts(client)
    assert any("prefect:logs" in where for where, _ in texts)
    texts.append(("slack:messages", str(local_stack.slack_messages())))
    texts.append(("meta:requests", str(local_stack.meta_requests())))
    hits = [hit for where, text in texts for hit in scan_text(where, text, secrets)]
    assert hits == [], [str(h) for h in hits]
