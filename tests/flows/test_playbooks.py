"""Each playbook end to end on the local stack: a real Prefect server, real OpenBao, the Meta and
Slack simulators as HTTP servers. Approvals come from a separate Prefect client, as the UI or the
intake would send them; outcomes are checked by reading the simulators and Vault, not the flow's word."""

import asyncio
import sys
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState,
                                            FlowRunFilterStateType)
from prefect.client.schemas.objects import StateType

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from flows.account_takeover import account_takeover  # noqa: E402
from flows.leaked_secret import leaked_secret  # noqa: E402
from flows.template_abuse import template_abuse  # noqa: E402

pytestmark = pytest.mark.usefixtures("local_stack")


async def wait_paused(flow_name: str, done: set[UUID] | None = None) -> UUID:
    async with get_client() as client:
        for _ in range(600):
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
            if runs:
                return runs[0].id
            await asyncio.sleep(0.1)
    raise AssertionError(f"no {flow_name} run paused")


async def approve(flow_name: str, *approvers: str) -> None:
    for who in approvers:
        run_id = await wait_paused(flow_name)
        async with get_client() as client:
            res = await client.resume_flow_run(run_id, run_input={"approver": who, "decision": "approve"})
        assert res.status.value == "ACCEPT", res.details
        await asyncio.sleep(0.3)


def templates(local_stack) -> dict[str, dict]:
    return {t["id"]: t for t in local_stack.meta_state()["templates"]}


async def test_template_abuse_deletes_the_phishing_template(local_stack) -> None:
    assert "5000000008" in templates(local_stack)
    run = asyncio.create_task(template_abuse(incident_id="INC-T1", template_names=["account_security_notice"],
                                             initiator="U0SECLEAD", poll_interval_s=1))
    await approve("template-abuse", "U0ONCALL")
    result = await run
    assert result["status"] == "contained"
    after = templates(local_stack)
    assert "5000000008" not in after          # gone, by the simulator's own state
    assert "5000000001" in after              # other templates untouched
    deletes = [r for r in local_stack.meta_requests() if r["method"] == "DELETE"]
    assert len(deletes) == 1 and "hsm_id" in str(deletes[0])
