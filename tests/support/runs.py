"""Helpers for flow tests on the local stack: wait for a run's state, read an incident's timeline and
Slack thread back from where they live (the incidents directory, the Slack simulator)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

from waguard.playbook.timeline import IncidentRecord

WAIT_LIMIT_S = 90  # a bound on a state that should come quickly: a failure, never a pause in a passing test


async def until(check: Callable[[], Any | Awaitable[Any]], what: str, limit_s: float = WAIT_LIMIT_S) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `limit_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.2)


async def paused_runs(flow_name: str) -> list[Any]:
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))


async def paused_run_of(flow_name: str, incident_id: str) -> UUID | None:
    """The paused run of `flow_name` working on `incident_id`, if there is one now."""
    for run in await paused_runs(flow_name):
        if run.parameters.get("incident_id") == incident_id:
            return run.id
    return None


async def paused_or_done(flow_name: str, incident_id: str, task: asyncio.Task[Any] | None = None) -> UUID | None:
    """Wait until the incident's run pauses (its id) or, for an in-process run, finishes (None)."""
    async def check() -> Any:
        if task is not None and task.done():
            return "done"
        return await paused_run_of(flow_name, incident_id)

    got = await until(check, f"{incident_id} paused or finished")
    return None if got == "done" else got


async def decide(run_id: UUID, approver: str, decision: str = "approve") -> None:
    async with get_client() as client:
        res = await client.resume_flow_run(run_id, run_input={"approver": approver, "decision": decision})
    assert res.status.value == "ACCEPT", res.details


async def run_state(run_id: UUID) -> StateType | None:
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
    return run.state.type if run.state else None


def timeline(local_stack: Any, incident_id: str) -> list[Any]:
    return IncidentRecord(local_stack.settings.incidents_dir, incident_id).events()


def thread(local_stack: Any, incident_id: str) -> dict[str, Any] | None:
    """The incident's head message in the Slack simulator, with its `replies`."""
    state = IncidentRecord(local_stack.settings.incidents_dir, incident_id).state()
    if "slack_ts" not in state:
        return None
    for message in local_stack.slack_messages().get(state["slack_channel"], []):
        if message["ts"] == state["slack_ts"]:
            return message
    return None


def thread_text(local_stack: Any, incident_id: str) -> str:
    head = thread(local_stack, incident_id)
    return json.dumps(head) if head else ""


def approval_messages(local_stack: Any, incident_id: str) -> list[dict[str, Any]]:
    """The thread's approval requests (live or decided), oldest first."""
    head = thread(local_stack, incident_id) or {"replies": []}
    return [r for r in head["replies"] if "Approval needed" in json.dumps(r.get("blocks", []))]


def live_buttons(message: dict[str, Any]) -> bool:
    return any(b.get("type") == "actions" for b in message.get("blocks", []))
