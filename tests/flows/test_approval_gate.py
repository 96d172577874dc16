"""The approval gate on a real Prefect server: decisions from the UI form and from stored Slack votes,
quorum, self-approval, and a timeout that ends in the policy's default instead of a failed run."""

import asyncio
from pathlib import Path
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run

from waguard.approval import ApprovalGate, Decision, StoredVote, gate_key, submit_vote
from waguard.incident import IncidentRecord
from waguard.policy import PlaybookPolicy

pytestmark = pytest.mark.usefixtures("prefect_server")


def policy(**kw) -> PlaybookPolicy:
    base = dict(playbook="leaked_secret", approvers=["U1", "U2", "U3"], quorum=1)
    return PlaybookPolicy(**{**base, **kw})


@flow(name="gate-under-test")
async def gated(incident_dir: str, policy_json: str, initiator: str | None, timeout_s: int,
                escalate_after_s: int | None = None) -> dict:
    gate = ApprovalGate(UUID(flow_run.id), "approve-rotation", PlaybookPolicy.model_validate_json(policy_json),
                        "SEV2", initiator, IncidentRecord(Path(incident_dir), "INC-GATE"),
                        poll_interval_s=1, timeout_s=timeout_s, escalate_after_s=escalate_after_s)
    d = await gate.decide("Rotate the app secret?")
    return {"outcome": d.outcome, "approvers": list(d.approvers), "by": d.by, "escalated": d.escalated}


async def paused_run(name: str = "gate-under-test", seen: set | None = None) -> UUID:
    """Wait until a run of the flow is PAUSED, as a separate client (Slack, the UI) would see it."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState
    from prefect.client.schemas.filters import FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    async with get_client() as client:
        for _ in range(300):
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
            )
            runs = [r for r in runs if not seen or r.id not in seen]
            if runs:
                return runs[0].id
            await asyncio.sleep(0.1)
    raise AssertionError("no run paused")


async def resume(run_id: UUID, **run_input) -> None:
    async with get_client() as client:
        result = await client.resume_flow_run(run_id, run_input=run_input)
        assert result.status.value == "ACCEPT", result.details


async def gate_nonce(run_id: UUID) -> str:
    import json
    async with get_client() as client:
        return json.loads(await client.read_flow_run_input(run_id, gate_key("approve-rotation")))["nonce"]


async def test_ui_approval_from_a_separate_client(tmp_path: Path) -> None:
    task = asyncio.create_task(gated(str(tmp_path), policy().model_dump_json(), "U9", 60))
    run_id = await paused_run()
    await resume(run_id, approver="U1", decision="approve", note="looks right")
    result = await task
    assert result == {"outcome": "approved", "approvers": ["U1"], "by": "U1", "escalated": False}
    events = IncidentRecord(tmp_path, "INC-GATE").events()
    assert [e.outcome for e in events if e.step == "approve-rotation"][-1] == "decided"


async def test_quorum_counts_distinct_valid_approvers_and_refuses_self_approval(tmp_path: Path) -> None:
    task = asyncio.create_task(gated(str(tmp_path), policy(quorum=2).model_dump_json(), "U2", 60))
    run_id = await paused_run()
    await resume(run_id, approver="U2", decision="approve")      # the initiator: refused
    seen = {run_id}
    await asyncio.sleep(0.5)
    await resume(await paused_run(), approver="U1", decision="approve")
    await asyncio.sleep(0.5)
    await resume(await paused_run(), approver="U1", decision="approve")  # twice: refused
    await asyncio.sleep(0.5)
    await resume(await paused_run(), approver="U3", decision="approve")
    result = await task
    assert result["outcome"] == "approved" and sorted(result["approvers"]) == ["U1", "U3"]
    refused = [e for e in IncidentRecord(tmp_path, "INC-GATE").events() if "refused" in e.detail]
    assert {e.actor for e in refused} == {"U2", "U1"}
    del seen


async def test_a_slack_vote_is_stored_then_wakes_the_pause(tmp_path: Path) -> None:
    task = asyncio.create_task(gated(str(tmp_path), policy().model_dump_json(), None, 60))
    run_id = await paused_run()
    nonce = await gate_nonce(run_id)
    assert await submit_vote(run_id, "approve-rotation", StoredVote(approver="U3", decision="deny", nonce="bad")) == "stale"
    assert await submit_vote(run_id, "approve-rotation", StoredVote(approver="U3", decision="deny", nonce=nonce)) == "accepted"
    result = await task
    assert result["outcome"] == "denied" and result["by"] == "U3"
    # A second click on the decided step changes nothing.
    assert await submit_vote(run_id, "approve-rotation", StoredVote(approver="U1", decision="approve", nonce=nonce)) == "closed"


async def test_timeout_applies_the_severity_default_and_the_run_completes(tmp_path: Path) -> None:
    result = await gated(str(tmp_path), policy(approval_timeout_s=60).model_dump_json(), None, 3, 1)
    assert result["outcome"] == "held" and result["by"] == "timeout-policy:SEV2" and result["escalated"]
