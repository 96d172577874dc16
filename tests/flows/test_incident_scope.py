"""What an approval covers and how runs on one WABA share it (issue 10, items 1 and 2), on the local
stack: a real Prefect server, OpenBao, the Meta and Slack simulators. Runs are in-process; decisions
come from a separate Prefect client as the UI sends them; outcomes are read from the simulators and
the incident timelines, never from the flow's own word."""

import asyncio
from pathlib import Path

import pytest
import yaml

from flows.template_abuse import template_abuse
from tests.support.runs import (
    approval_messages,
    decide,
    paused_or_done,
    paused_run_of,
    thread_text,
    timeline,
    until,
)

pytestmark = pytest.mark.usefixtures("local_stack")
ROOT = Path(__file__).resolve().parents[2]
FLOW = "template-abuse"


def template_ids(local_stack) -> set[str]:
    return {t["id"] for t in local_stack.meta_state()["templates"]}


def opening_snapshots(local_stack, incident_id: str) -> int:
    return sum(1 for e in timeline(local_stack, incident_id)
               if e.step == "snapshot-evidence" and e.target == "evidence:open")


async def test_an_approval_is_not_reused_for_other_actions(local_stack) -> None:
    """Run A of INC-S1 is approved for nothing destructive (no template matched); run B of the same
    incident would delete login_code: it must ask again, show login_code, and snapshot first."""
    a = asyncio.create_task(template_abuse(incident_id="INC-S1", template_names=["no_such_template_zz"],
                                           poll_interval_s=1))
    paused = await paused_or_done(FLOW, "INC-S1", a)
    if paused is not None:        # asking to approve nothing is allowed; approving it must not carry over
        await decide(paused, "U0ONCALL")
    assert (await a)["status"] == "contained"
    assert "5000000004" in template_ids(local_stack)     # login_code, APPROVED

    b = asyncio.create_task(template_abuse(incident_id="INC-S1", template_names=["login_code"],
                                           poll_interval_s=1))
    paused = await paused_or_done(FLOW, "INC-S1", b)
    assert paused is not None, f"run B did not ask: {await b}"
    assert "5000000004" in template_ids(local_stack)     # nothing deleted while asking
    request = approval_messages(local_stack, "INC-S1")[-1]
    assert "login_code" in str(request["blocks"]) and "5000000004" in str(request["blocks"])
    await decide(paused, "U0ONCALL", "deny")
    assert (await b)["status"] == "denied"
    assert "5000000004" in template_ids(local_stack)
    assert opening_snapshots(local_stack, "INC-S1") == 2  # one per run
    decided = [e for e in timeline(local_stack, "INC-S1") if e.outcome == "decided"]
    assert decided[-1].data["actions"] == [["delete_template", "login_code/en_US/5000000004"]]


async def test_quick_runs_get_their_own_incident() -> None:
    """The Quick run form carries no incident id: each run makes its own, so no approval is shared."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert all("incident_id" not in (d.get("parameters") or {}) for d in spec["deployments"])
    one = await template_abuse(plan=True, template_names=["order_update"], poll_interval_s=1)
    two = await template_abuse(plan=True, template_names=["order_update"], poll_interval_s=1)
    assert one["incident_id"] != two["incident_id"]


async def test_incidents_on_a_busy_waba_wait_visibly_in_arrival_order(local_stack) -> None:
    """X holds the WABA's slot while paused for approval; Y then Z arrive. Both say they wait (Slack and
    timeline, naming X), wait past the old 150 s limit if need be, and get the slot in order."""
    runs = {}
    runs["INC-Q1"] = asyncio.create_task(template_abuse(
        incident_id="INC-Q1", template_names=["order_update"], statuses=["PAUSED"], poll_interval_s=1))
    x = await paused_or_done(FLOW, "INC-Q1", runs["INC-Q1"])
    assert x is not None
    for incident in ("INC-Q2", "INC-Q3"):
        runs[incident] = asyncio.create_task(template_abuse(
            incident_id=incident, template_names=["order_update"], statuses=["PAUSED"], poll_interval_s=1))
        await until(lambda i=incident: any(e.step == "wait-for-slot" for e in timeline(local_stack, i)),
                    f"{incident} records that it waits")
        # The timeline record comes first, the Slack message right after it: wait for that too.
        await until(lambda i=incident: f"waiting behind run {x}" in thread_text(local_stack, i),
                    f"{incident} says in Slack that it waits behind {x}")
        waiting = next(e for e in timeline(local_stack, incident) if e.step == "wait-for-slot")
        assert str(x) in waiting.detail
    await decide(x, "U0ONCALL", "deny")
    assert (await runs["INC-Q1"])["status"] == "denied"
    # Y, the older waiter, gets the slot; Z keeps waiting.
    y = await until(lambda: paused_run_of(FLOW, "INC-Q2"), "INC-Q2 asks for approval")
    assert await paused_run_of(FLOW, "INC-Q3") is None and not runs["INC-Q3"].done()
    assert not any(e.step == "approve-containment" for e in timeline(local_stack, "INC-Q3"))
    await decide(y, "U0ONCALL", "deny")
    z = await until(lambda: paused_run_of(FLOW, "INC-Q3"), "INC-Q3 asks for approval")
    await decide(z, "U0ONCALL", "deny")
    for incident in ("INC-Q2", "INC-Q3"):
        assert (await runs[incident])["status"] == "denied"
        assert any(e.step == "wait-for-slot" and e.outcome == "done" for e in timeline(local_stack, incident))
    assert "5000000003" in template_ids(local_stack)
