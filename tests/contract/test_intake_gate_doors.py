"""Both doors to an approval gate on a real Prefect server: Slack clicks through the intake over HTTP,
and the Prefect UI's form (an ApprovalForm resuming the paused run).

- Issue 10.6: one self-approval rule for both doors; `slack:U0ONCALL` and `U0ONCALL` are one person.
- Issue 10.3: a click on a run that has ended (or is being cancelled) is refused as closed and audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import yaml
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.runtime import flow_run
from prefect.states import Cancelled, Cancelling, Completed, Crashed, State

import tests.fixtures.intake as fx
from tests.fixtures.intake import RUNBOOKS, FakeClock, IntakeEnv, click_body, slack_headers
from waguard.intake.app import create_app
from waguard.intake.audit import read_audit
from waguard.intake.slack_actions import PrefectRunDirectory
from waguard.intake.starter import PrefectRunStarter
from waguard.playbook.approval import ApprovalGate, StoredVote, gate_key, submit_vote, vote_prefix
from waguard.playbook.policy import load_policy
from waguard.playbook.timeline import IncidentRecord

intake_env = fx.intake_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]
GATE_FLOW = f"waguard-intake-doors-{uuid.uuid4().hex[:8]}"
STEP = "approve-containment"


@flow(name=GATE_FLOW)
async def gated_playbook(incident_id: str, initiator: str, runbooks: str, record_dir: str) -> dict:
    policy = load_policy(Path(runbooks), "account_takeover")  # quorum 2
    gate = ApprovalGate(UUID(flow_run.id), STEP, policy, "SEV2", initiator,
                        IncidentRecord(Path(record_dir), incident_id), poll_interval_s=1, timeout_s=90)
    d = await gate.decide("Suspend the numbers and remove unknown users?")
    return {"outcome": d.outcome, "approvers": sorted(d.approvers)}


@dataclass
class Door:
    client: httpx.AsyncClient
    secret: str
    clock: FakeClock
    run_id: UUID
    nonce: str
    task: asyncio.Task
    incident: IncidentRecord
    audit_path: Path
    key: str | None = None  # the pause key last seen
    seq: int = 0

    async def click(self, user: str, action: str = "approve") -> tuple[int, str, dict[str, Any]]:
        """A signed Slack click through the intake over HTTP."""
        self.seq += 1
        body = click_body(user, self.run_id, STEP, self.nonce, action,
                          action_ts=f"{int(self.clock.now)}.{self.seq:06d}")
        r = await self.client.post("/slack/interactions", content=body,
                                   headers=slack_headers(self.secret, body, int(self.clock.now)))
        answer = r.json()
        return r.status_code, answer.get("error", answer["outcome"]), answer

    async def ui(self, approver: str, decision: str = "approve") -> None:
        """What the Prefect UI does when a responder submits the ApprovalForm."""
        async with get_client() as client:
            result = await client.resume_flow_run(self.run_id, run_input={"approver": approver,
                                                                         "decision": decision})
        assert result.status.value == "ACCEPT", result.details

    async def waiting(self) -> bool:
        """Wait until the run pauses again at a new pause (True) or its flow returns (False).

        The pause key tells the gate's next question from the one just answered or woken."""
        async with get_client() as client:
            for _ in range(600):
                if self.task.done():
                    return False
                run = await client.read_flow_run(self.run_id)
                if run.state and run.state.is_paused() and run.state.state_details.pause_key != self.key:
                    self.key = run.state.state_details.pause_key
                    return True
                await asyncio.sleep(0.1)
        raise AssertionError("the run neither paused nor finished")


@contextlib.asynccontextmanager
async def door(env: IntakeEnv, tmp_path: Path, initiator: str) -> AsyncIterator[Door]:
    runbooks = tmp_path / "runbooks"
    shutil.copytree(RUNBOOKS, runbooks)
    policy_file = runbooks / "account-takeover.policy.yaml"
    policy = yaml.safe_load(policy_file.read_text())
    policy["approvers"] = ["U0ONCALL", "U0SECLEAD", "U0CISO", "U0IRLEAD"]  # quorum stays 2
    policy_file.write_text(yaml.safe_dump(policy))
    settings = env.settings.model_copy(update={"runbooks_dir": runbooks})
    clock = FakeClock(time.time())
    app = create_app(settings, env.vault, PrefectRunStarter(), clock,
                     runs=PrefectRunDirectory({GATE_FLOW: "account_takeover"}))
    incident_id = f"INC-{uuid.uuid4().hex[:8]}"
    task = asyncio.create_task(gated_playbook(incident_id, initiator, str(runbooks), str(tmp_path / "inc")))
    try:
        async with get_client() as client:
            for _ in range(600):
                runs = await client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=[GATE_FLOW])))
                mine = [r for r in runs if r.parameters.get("incident_id") == incident_id]
                if mine and mine[0].state and mine[0].state.is_paused():
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the gated run never paused")
            nonce = json.loads(await client.read_flow_run_input(mine[0].id, gate_key(STEP)))["nonce"]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as http:
            record = IncidentRecord(tmp_path / "inc", incident_id)
            yield Door(http, env.secrets.slack_signing_secret, clock, mine[0].id, nonce, task, record,
                       settings.intake.state_dir / "audit.jsonl", mine[0].state.state_details.pause_key)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await app.state.intake.aclose()


async def test_the_initiator_is_one_person_at_both_doors(intake_env: IntakeEnv, tmp_path: Path) -> None:
    async with door(intake_env, tmp_path, initiator="slack:U0ONCALL") as d:
        assert (await d.click("U0ONCALL"))[:2] == (403, "self_approval")  # Slack door
        await d.ui("U0ONCALL")  # UI door: the same person, written without the channel prefix
        assert await d.waiting(), "the initiator's UI approval was counted"
        assert (await d.click("U0SECLEAD"))[:2] == (200, "vote-accepted")
        assert await d.waiting()
        await d.ui("slack:U0SECLEAD")  # the same approver again, through the other door
        assert await d.waiting(), "one person counted twice toward the quorum"
        assert (await d.click("U0CISO"))[:2] == (200, "vote-accepted")
        result = await asyncio.wait_for(d.task, 90)
    assert result == {"outcome": "approved", "approvers": ["U0CISO", "U0SECLEAD"]}
    refused = {(e.actor, e.detail) for e in d.incident.events() if e.detail.startswith("vote refused")}
    assert {actor for actor, _ in refused} == {"U0ONCALL", "slack:U0SECLEAD"}


@pytest.mark.parametrize(
    "final",
    [Cancelled(), Cancelling(), Crashed(), Completed(), State(type="FAILED")],  # type: ignore[arg-type]
    ids=lambda s: s.type.value,
)
async def test_a_click_on_an_ended_run_is_refused_as_closed(
    intake_env: IntakeEnv, tmp_path: Path, final: State
) -> None:
    async with door(intake_env, tmp_path, initiator="intake:github") as d:
        async with get_client() as client:
            await client.set_flow_run_state(d.run_id, final, force=True)  # as the UI's Cancel does
        status, error, answer = await d.click("U0SECLEAD")
        assert (status, error) == (409, "closed_run")
        assert answer["response_type"] == "ephemeral" and final.type.value.lower() in answer["text"].lower()
        async with get_client() as client:
            stored = await client.filter_flow_run_input(d.run_id, vote_prefix(STEP), 10, set())
        assert stored == []  # nothing reached the run
        # The second lock: delivering a vote refuses an ended run whatever its gate record says.
        vote = StoredVote(approver="U0CISO", decision="approve", nonce=d.nonce)
        assert await submit_vote(d.run_id, STEP, vote) == "closed"
    [record] = [r for r in read_audit(d.audit_path) if r["source"] == "slack"]
    assert (record["outcome"], record["status"], record["run_id"], record["actor"]) == (
        "refused-closed", 409, str(d.run_id), "U0SECLEAD")
