"""`waguard incident list | show | cancel` (issue 15 item 6) on the real local stack, run as a responder
would: the installed command in its own process, against the stack's Prefect server, intake and Slack.

`cancel` closes the incident everywhere: the paused run is Cancelled through the Prefect API, its close
entry is on the timeline, its Slack approval shows closed, and a later click on it is refused. An
incident whose run died without closing is closed directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from tests.fixtures.intake import click_body, slack_headers
from tests.fixtures.stack import ROOT
from tests.support.runs import approval_messages, live_buttons, paused_run_of, run_state, timeline, until
from waguard.vault.client import VaultClient

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_stack")]
FLOW = "template-abuse"


def waguard(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed command, in a process of its own, with the stack's environment."""
    exe = Path(sys.executable).with_name("waguard")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(),
                          timeout=240)


async def start_paused(incident_id: str) -> UUID:
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(f"{FLOW}/{FLOW}")
        await client.create_flow_run_from_deployment(deployment.id, parameters={
            "incident_id": incident_id, "template_names": ["order_update"], "statuses": ["PAUSED"],
            "initiator": "U0SECLEAD", "poll_interval_s": 1})
    return await until(lambda: paused_run_of(FLOW, incident_id), f"{incident_id} asks for approval")


def button_value(message: dict) -> dict:
    actions = next(b for b in message["blocks"] if b.get("type") == "actions")
    return json.loads(actions["elements"][0]["value"])


async def click(local_stack, value: dict, user: str = "U0ONCALL") -> httpx.Response:
    settings = local_stack.settings
    vault = VaultClient.from_settings(settings.vault)
    secret = (await vault.read_secret(settings.slack.signing_secret_path)).value.get_secret_value()
    vault.close()
    body = click_body(user, UUID(value["run"]), value["step"], value["nonce"])
    return httpx.post(f"{local_stack.stack.urls.intake}/slack/interactions", content=body,
                      headers=slack_headers(secret, body, int(time.time())))


async def test_cancel_closes_a_paused_incident_everywhere(local_stack) -> None:
    run_id = await start_paused("INC-CLI1")
    value = button_value(approval_messages(local_stack, "INC-CLI1")[-1])

    listed = waguard("incident", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    mine = next(i for i in json.loads(listed.stdout) if i["incident_id"] == "INC-CLI1")
    assert mine["status"] == "open" and mine["live_runs"] == {str(run_id): "Paused"}

    done = waguard("incident", "cancel", "INC-CLI1", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["cancelled"] == [str(run_id)]

    assert await run_state(run_id) == StateType.CANCELLED
    closes = [e for e in timeline(local_stack, "INC-CLI1") if e.step == "close"]
    assert [(e.outcome, e.detail, e.data["run"]) for e in closes] == [("ended", "cancelled", str(run_id))]
    request = approval_messages(local_stack, "INC-CLI1")[-1]
    assert not live_buttons(request) and "Closed without a decision" in json.dumps(request["blocks"])
    late = await click(local_stack, value)
    assert late.status_code == 409 and "closed" in late.text, late.text
    assert "5000000003" in {t["id"] for t in local_stack.meta_state()["templates"]}  # nothing was deleted

    shown = waguard("incident", "show", "INC-CLI1")
    assert shown.returncode == 0, shown.stderr
    assert "status    closed: cancelled" in shown.stdout and "close" in shown.stdout
    again = waguard("incident", "cancel", "INC-CLI1")
    assert again.returncode == 0 and "already closed" in again.stdout
    assert len([e for e in timeline(local_stack, "INC-CLI1") if e.step == "close"]) == 1


async def test_cancel_closes_an_incident_whose_run_died(local_stack) -> None:
    """The run's process and its runner are gone (no hook ran): cancel closes it directly."""
    from waguard.playbook.closing import slack_client
    from waguard.playbook.timeline import IncidentRecord
    from waguard.slack.blocks import ApprovalRequest, IncidentView

    settings = local_stack.settings
    dead = uuid4()
    slack = await slack_client(settings)
    head = await slack.open_incident(settings.slack.channel, IncidentView(
        incident_id="INC-CLI2", playbook=FLOW, title="left open", severity="SEV2", state="awaiting approval",
        prefect_run_url=f"{settings.prefect.ui_url}/runs/flow-run/{dead}"))
    request = ApprovalRequest(run_id=dead, step="approve-containment", nonce="deadrun-nonce-2", summary="x")
    ref = await slack.post_approval(head, request)
    record = IncidentRecord(settings.incidents_dir, "INC-CLI2")
    record.append("open", "started", f"template_abuse run {dead} on WABA 3000000001",
                  data={"waba_id": "3000000001"})
    record.remember(slack_channel=head.channel, slack_ts=head.ts, open_approvals=[{
        "run": str(dead), "step": "approve-containment", "channel": ref.channel, "ts": ref.ts,
        "request": request.model_dump(mode="json")}])

    done = waguard("incident", "cancel", "INC-CLI2", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["closed_here"] == [str(dead)]
    closes = [e for e in timeline(local_stack, "INC-CLI2") if e.step == "close"]
    assert [(e.detail, e.data["run"]) for e in closes] == [("cancelled", str(dead))]
    assert not live_buttons(approval_messages(local_stack, "INC-CLI2")[0])


def test_an_unknown_incident_is_a_clear_error_that_changes_nothing(local_stack) -> None:
    done = waguard("incident", "cancel", "INC-NOSUCH")
    assert done.returncode == 2 and "no incident INC-NOSUCH" in done.stderr
    assert not (local_stack.settings.incidents_dir / "INC-NOSUCH").exists()


async def test_cancel_stops_a_run_still_waiting_to_start(local_stack) -> None:
    """A run scheduled for later (or not yet picked up) has no timeline yet: it is cancelled at once."""
    from datetime import UTC, datetime, timedelta

    from prefect.states import Scheduled

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(f"{FLOW}/{FLOW}")
        run = await client.create_flow_run_from_deployment(
            deployment.id, parameters={"incident_id": "INC-CLI3", "template_names": ["order_update"]},
            state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(hours=1)))
    done = waguard("incident", "cancel", "INC-CLI3", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["cancelled"] == [str(run.id)]
    assert await run_state(run.id) == StateType.CANCELLED
