"""The approval gate on a real Prefect server: decisions from the UI form and from stored Slack votes,
quorum, self-approval, and a timeout that escalates first and ends in the policy's default instead of
a failed run.

Time is the gate's injected clock (`CLOCK`), moved by the tests; the tests wait for states (the run
paused at a new pause key, the run's result), never for seconds. Each test names its own run, so no
test can pick up another's paused run.
"""

import asyncio
import json
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.runtime import flow_run

from waguard.playbook.approval import ApprovalGate, StoredVote, gate_key, submit_vote, wake_pause
from waguard.playbook.policy import Escalation, PlaybookPolicy
from waguard.playbook.timeline import IncidentRecord

pytestmark = pytest.mark.usefixtures("prefect_server")

STEP = "approve-rotation"


class FakeClock:
    """The gate's clock: it moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CLOCK = FakeClock()


@pytest.fixture(autouse=True)
def fresh_clock() -> None:
    CLOCK.now = 1000.0


def policy(**kw) -> PlaybookPolicy:
    base = dict(playbook="leaked_secret", approvers=["U1", "U2", "U3"], quorum=1)
    return PlaybookPolicy(**{**base, **kw})


@flow(name="gate-under-test")
async def gated(incident_dir: str, policy_json: str, initiator: str | None, timeout_s: int | None = None,
                escalate_after_s: int | None = None) -> dict:
    gate = ApprovalGate(UUID(flow_run.id), STEP, PlaybookPolicy.model_validate_json(policy_json),
                        "SEV2", initiator, IncidentRecord(Path(incident_dir), "INC-GATE"),
                        poll_interval_s=1, timeout_s=timeout_s, escalate_after_s=escalate_after_s,
                        clock=CLOCK)
    d = await gate.decide("Rotate the app secret?")
    return {"outcome": d.outcome, "approvers": list(d.approvers), "by": d.by, "escalated": d.escalated}


class GateRun:
    """One named run of the gate, watched as a separate client (Slack, the UI) would watch it."""

    def __init__(self, tmp_path: Path, pol: PlaybookPolicy, initiator: str | None = None, **kw) -> None:
        self.name = f"gate-{uuid4().hex[:10]}"
        self.tmp_path = tmp_path
        named = gated.with_options(flow_run_name=self.name)
        self.task = asyncio.create_task(named(str(tmp_path), pol.model_dump_json(), initiator, **kw))
        self.run_id: UUID | None = None
        self.key: str | None = None  # the pause key last seen

    async def next_pause(self) -> UUID:
        """Wait until the run is paused at a pause key not seen before (the gate asked again)."""
        async with get_client() as client:
            for _ in range(600):
                assert not self.task.done(), f"the run ended instead of pausing: {self.task.result()}"
                mine = FlowRunFilter(name=FlowRunFilterName(any_=[self.name]))
                runs = await client.read_flow_runs(flow_run_filter=mine)
                state = runs[0].state if runs else None
                if state and state.is_paused() and state.state_details.pause_key != self.key:
                    self.run_id, self.key = runs[0].id, state.state_details.pause_key
                    return runs[0].id
                await asyncio.sleep(0.1)
        raise AssertionError("the run never paused again")

    async def vote(self, **run_input) -> None:
        """Submit the UI form of the current pause."""
        async with get_client() as client:
            result = await client.resume_flow_run(self.run_id, run_input=run_input)
        assert result.status.value == "ACCEPT", result.details

    def events(self) -> list:
        return [e for e in IncidentRecord(self.tmp_path, "INC-GATE").events() if e.step == STEP]


async def gate_nonce(run_id: UUID) -> str:
    async with get_client() as client:
        return json.loads(await client.read_flow_run_input(run_id, gate_key(STEP)))["nonce"]


async def test_ui_approval_from_a_separate_client(tmp_path: Path) -> None:
    run = GateRun(tmp_path, policy(), "U9", timeout_s=60)
    await run.next_pause()
    await run.vote(approver="U1", decision="approve", note="looks right")
    assert await run.task == {"outcome": "approved", "approvers": ["U1"], "by": "U1", "escalated": False}
    assert [e.outcome for e in run.events()][-1] == "decided"


async def test_the_form_a_person_sees_has_only_approver_decision_and_note(tmp_path: Path) -> None:
    run = GateRun(tmp_path, policy(), None, timeout_s=60)
    run_id = await run.next_pause()
    async with get_client() as client:
        state = (await client.read_flow_run(run_id)).state
        # The schema Prefect stored for this pause: what the UI renders and what a resume is checked against.
        schema = await client.read_flow_run_input(run_id, state.state_details.run_input_keyset["schema"])
        schema = json.loads(schema) if isinstance(schema, str) else schema
        assert set(schema["properties"]) == {"approver", "decision", "note"}
        assert set(schema["required"]) == {"approver", "decision"}
        assert schema["properties"]["decision"]["enum"] == ["approve", "deny"]
        assert "default" not in schema["properties"]["decision"]
        # Nothing outside those fields is accepted, and the required ones must be filled.
        for bad in ({"approver": "U1", "decision": "approve", "via": "wake"}, {"approver": "U1"},
                    {"approver": "", "decision": "approve"}):
            result = await client.resume_flow_run(run_id, run_input=bad)
            assert result.status.value == "REJECT", bad
    await run.vote(approver="U2", decision="deny", note="wrong app")
    assert (await run.task)["outcome"] == "denied"


async def test_a_wake_is_not_a_vote_and_the_form_still_counts_after_it(tmp_path: Path) -> None:
    run = GateRun(tmp_path, policy(), None, timeout_s=60)
    run_id = await run.next_pause()
    async with get_client() as client:
        assert await wake_pause(client, run_id)
    await run.next_pause()  # woken, nothing decided: the gate asks again
    assert not [e for e in run.events() if e.outcome == "decided"]
    await run.vote(approver="U3", decision="deny")
    result = await run.task
    assert (result["outcome"], result["by"]) == ("denied", "U3")


async def test_quorum_counts_distinct_valid_approvers_and_refuses_self_approval(tmp_path: Path) -> None:
    run = GateRun(tmp_path, policy(quorum=2), "U2", timeout_s=60)
    for approver in ("U2", "U1", "U1", "U3"):  # the initiator: refused; U1 twice: counted once
        await run.next_pause()
        await run.vote(approver=approver, decision="approve")
    result = await run.task
    assert result["outcome"] == "approved" and sorted(result["approvers"]) == ["U1", "U3"]
    refused = [e for e in run.events() if "refused" in e.detail]
    assert {e.actor for e in refused} == {"U2", "U1"}


async def test_a_slack_vote_is_stored_then_wakes_the_pause(tmp_path: Path) -> None:
    run = GateRun(tmp_path, policy(), None, timeout_s=60)
    run_id = await run.next_pause()
    nonce = await gate_nonce(run_id)
    assert await submit_vote(run_id, STEP, StoredVote(approver="U3", decision="deny", nonce="bad")) == "stale"
    deny = StoredVote(approver="U3", decision="deny", nonce=nonce)
    assert await submit_vote(run_id, STEP, deny) == "accepted"
    result = await run.task
    assert result["outcome"] == "denied" and result["by"] == "U3"
    # A second click on the decided step changes nothing.
    late = StoredVote(approver="U1", decision="approve", nonce=nonce)
    assert await submit_vote(run_id, STEP, late) == "closed"


def escalating_policy() -> PlaybookPolicy:
    return policy(approval_timeout_s=60, escalation=Escalation(channel="C0ESCALATE", after_s=30))


async def test_timeout_applies_the_severity_default_and_the_run_completes(tmp_path: Path) -> None:
    run = GateRun(tmp_path, escalating_policy(), None)
    await run.next_pause()
    CLOCK.now += 31
    await run.next_pause()  # escalated, asked again
    assert [e.detail for e in run.events()][-1] == "no decision yet: escalated"
    CLOCK.now += 30
    result = await run.task
    assert result == {"outcome": "held", "approvers": [], "by": "timeout-policy:SEV2", "escalated": True}


async def test_escalation_is_not_skipped_when_the_deadline_passes_before_any_check(tmp_path: Path) -> None:
    run = GateRun(tmp_path, escalating_policy(), None)
    await run.next_pause()
    CLOCK.now += 600  # one wake finds the escalation and the deadline both due
    result = await run.task
    assert result["outcome"] == "held" and result["escalated"]
    details = [e.detail for e in run.events()]
    assert details.index("no decision yet: escalated") < len(details) - 1
    assert run.events()[-1].outcome == "decided"
