"""An incident's life around its run (issue 10, items 3 and 4), through the real path: the stack's
intake over HTTP, the deployments served by the stack's runner, the Prefect server, the simulators.

- Cancelling a paused run (as `prefect flow-run cancel` does) closes its incident: buttons gone, the
  head message and the timeline show the end.
- Alertmanager updates to the same group reach the running incident: a joined alert adds its
  template to the pending approval (a new request; the old one disarmed), a resolve is posted in the
  thread and on the timeline, and the approval keeps asking (the playbook's default policy)."""

import asyncio
import json
import os
import signal
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelling

from tests.fixtures.intake import am_headers, am_notification
from tests.support.runs import (
    approval_messages,
    decide,
    live_buttons,
    paused_run_of,
    run_state,
    thread,
    thread_text,
    timeline,
    until,
)

pytestmark = pytest.mark.usefixtures("local_stack")
FLOW = "template-abuse"
WABA = "3000000001"


async def start_deployment(parameters: dict) -> UUID:
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(f"{FLOW}/{FLOW}")
        run = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    return run.id


async def test_cancelling_a_paused_run_closes_its_incident(local_stack) -> None:
    run_id = await start_deployment({"incident_id": "INC-C1", "template_names": ["order_update"],
                                     "statuses": ["PAUSED"], "initiator": "U0SECLEAD", "poll_interval_s": 1})
    await until(lambda: paused_run_of(FLOW, "INC-C1"), "INC-C1 asks for approval")
    assert live_buttons(approval_messages(local_stack, "INC-C1")[-1])
    async with get_client() as client:   # what `prefect flow-run cancel` and the UI's Cancel do
        await client.set_flow_run_state(run_id, Cancelling(message="cancelled by a responder"))
    await until(lambda: _is(run_id, StateType.CANCELLED), "the run is cancelled")

    closes = [e for e in timeline(local_stack, "INC-C1") if e.step == "close"]
    assert [(e.outcome, e.detail, e.data["run"]) for e in closes] == [("ended", "cancelled", str(run_id))]
    request = approval_messages(local_stack, "INC-C1")[-1]
    assert not live_buttons(request) and "Closed without a decision" in json.dumps(request["blocks"])
    head = thread(local_stack, "INC-C1")
    assert "cancelled" in json.dumps(head["blocks"]) and "awaiting approval" not in json.dumps(head["blocks"])
    assert "*CANCELLED*" in thread_text(local_stack, "INC-C1")
    assert "5000000003" in {t["id"] for t in local_stack.meta_state()["templates"]}


async def test_a_killed_run_process_closes_its_incident(local_stack) -> None:
    """SIGKILL of the run's own process: the launcher reports it Crashed and runs on_crashed."""
    from waguard.launcher.rundir import pid_of

    run_id = await start_deployment({"incident_id": "INC-K1", "template_names": ["order_update"],
                                     "statuses": ["PAUSED"], "initiator": "U0SECLEAD", "poll_interval_s": 1})
    await until(lambda: paused_run_of(FLOW, "INC-K1"), "INC-K1 asks for approval")
    pid = pid_of(local_stack.settings.launcher.dir.resolve(), run_id)
    if pid is None:
        pytest.skip("the stack runs deployments with serve(), not the launcher: no run pid file")
    os.kill(pid, signal.SIGKILL)
    await until(lambda: _is(run_id, StateType.CRASHED), "the run is crashed")
    await until(lambda: any(e.step == "close" for e in timeline(local_stack, "INC-K1")), "a close entry")
    closes = [e for e in timeline(local_stack, "INC-K1") if e.step == "close"]
    assert [(e.outcome, e.detail) for e in closes] == [("ended", "crashed")]
    # The hook writes the close entry, then updates Slack: wait for the buttons, not a moment.
    await until(lambda: not live_buttons(approval_messages(local_stack, "INC-K1")[-1]),
                "the buttons are gone")
    await until(lambda: "*CRASHED*" in thread_text(local_stack, "INC-K1"), "the thread says CRASHED")


async def test_the_next_run_closes_what_a_dead_runner_left_open(local_stack) -> None:
    """The runner itself was SIGKILLed (no hook ran): its run's thread keeps live buttons. What it
    left is made here as it would be (the incident state, a real Slack thread); the next run of the
    incident closes it before doing anything else."""
    from uuid import uuid4

    from flows.template_abuse import template_abuse
    from waguard.playbook.closing import slack_client
    from waguard.playbook.timeline import IncidentRecord
    from waguard.slack.blocks import ApprovalRequest, IncidentView

    settings = local_stack.settings
    dead = uuid4()                        # a run Prefect no longer knows counts as ended
    slack = await slack_client(settings)
    head = await slack.open_incident(settings.slack.channel, IncidentView(
        incident_id="INC-LIFE-LEFT-OPEN", playbook=FLOW, title="left open", severity="SEV2", state="awaiting approval",
        prefect_run_url=f"{settings.prefect.ui_url}/runs/flow-run/{dead}"))
    request = ApprovalRequest(run_id=dead, step="approve-containment", nonce="deadrun-nonce-1", summary="x")
    ref = await slack.post_approval(head, request)
    IncidentRecord(settings.incidents_dir, "INC-LIFE-LEFT-OPEN").remember(
        slack_channel=head.channel, slack_ts=head.ts, open_approvals=[{
            "run": str(dead), "step": "approve-containment", "channel": ref.channel, "ts": ref.ts,
            "request": request.model_dump(mode="json")}])
    assert live_buttons(approval_messages(local_stack, "INC-LIFE-LEFT-OPEN")[0])

    rerun = asyncio.create_task(template_abuse(incident_id="INC-LIFE-LEFT-OPEN", template_names=["order_update"],
                                               statuses=["PAUSED"], poll_interval_s=1))
    rerun_id = await until(lambda: paused_run_of(FLOW, "INC-LIFE-LEFT-OPEN"), "the next run asks for approval")
    closes = [e for e in timeline(local_stack, "INC-LIFE-LEFT-OPEN") if e.step == "close"]
    assert [(e.detail, e.data["run"]) for e in closes] == [("abandoned", str(dead))]
    left, asked = approval_messages(local_stack, "INC-LIFE-LEFT-OPEN")
    assert not live_buttons(left) and "Closed without a decision" in json.dumps(left["blocks"])
    assert live_buttons(asked)
    await decide(rerun_id, "U0ONCALL", "deny")
    assert (await rerun)["status"] == "denied"


async def _is(run_id: UUID, state: StateType) -> bool:
    return await run_state(run_id) == state


async def alert(local_stack, group: str, templates: list[str], status: str = "firing") -> dict:
    from waguard.vault.client import VaultClient

    vault = VaultClient.from_settings(local_stack.settings.vault)
    token = (await vault.read_secret(local_stack.settings.intake.alertmanager_token_path)).value
    body = am_notification(status, group=group, waba=WABA, alerts=len(templates), severity="warning")
    for item, name in zip(body["alerts"], templates, strict=True):
        item["labels"]["template"] = name
    r = httpx.post(f"{local_stack.stack.urls.intake}/alerts/alertmanager", content=json.dumps(body),
                   headers=am_headers(token.get_secret_value()))
    assert r.status_code == 200, r.text
    return r.json()


async def test_alert_updates_reach_the_running_incident(local_stack) -> None:
    first = await alert(local_stack, "TplAbuseGrows", ["order_update", "login_code"])
    assert first["outcome"] == "started", first
    incident = first["incidents"][0]["incident_key"]
    run_id = await until(lambda: paused_run_of(FLOW, incident), "the alert's run asks for approval")
    asked = approval_messages(local_stack, incident)
    assert len(asked) == 1 and "spring_sale" not in json.dumps(asked[0]["blocks"])

    joined = await alert(local_stack, "TplAbuseGrows", ["order_update", "login_code", "spring_sale"])
    assert joined["outcome"] == "joined", joined
    await until(lambda: len(approval_messages(local_stack, incident)) == 2, "a new approval request")
    old, new = approval_messages(local_stack, incident)
    assert not live_buttons(old) and "Superseded" in json.dumps(old["blocks"])
    assert live_buttons(new) and "spring_sale" in json.dumps(new["blocks"])
    assert "login_code" in json.dumps(new["blocks"])
    update = next(e for e in timeline(local_stack, incident) if e.step == "alert-update")
    assert update.data["added"] == {"template_names": ["spring_sale"]}

    resolved = await alert(local_stack, "TplAbuseGrows", ["order_update", "login_code", "spring_sale"],
                           status="resolved")
    assert resolved["outcome"] == "recorded", resolved
    await until(lambda: any("resolved" in e.detail for e in timeline(local_stack, incident)
                            if e.step == "alert-update"), "the resolve on the timeline")
    assert "Alert resolved" in thread_text(local_stack, incident)
    # Default policy: still asking. The resolve woke the pause; the run posts it, then pauses again.
    await until(lambda: paused_run_of(FLOW, incident), "the run asking on after the resolve")
    assert live_buttons(approval_messages(local_stack, incident)[-1])

    await decide(await until(lambda: paused_run_of(FLOW, incident), "paused"), "U0ONCALL", "deny")
    await until(lambda: _is(run_id, StateType.COMPLETED), "the run ends denied")
    ids = {t["id"] for t in local_stack.meta_state()["templates"]}
    assert {"5000000001", "5000000004"} <= ids
