"""The automations that recover a dead launcher's runs (waguard.launcher.recovery), judged by Prefect's own
server-side trigger model: which events each one starts on, expects, and covers. (That they fire on the
scaled profile is tests/e2e/test_scaled_profile.py's launcher-killed storm.)"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from prefect.server.events.schemas.automations import EventTrigger as ServerTrigger
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.types._datetime import now

from waguard.launcher.recovery import MAX_RUN_COUNT, recovery_automations

FLOWS = ["template-abuse", "posture-audit"]
PLAYBOOKS = ["template-abuse"]


def _triggers() -> dict[str, ServerTrigger]:
    return {a.name.removeprefix("waguard: "): ServerTrigger.model_validate(a.trigger.model_dump(mode="json"))
            for a in recovery_automations(FLOWS, PLAYBOOKS)}


def _event(name: str, flow: str = "template-abuse", run_count: int = 1) -> ReceivedEvent:
    run = uuid4()
    return ReceivedEvent(
        occurred=now("UTC"), event=name, id=uuid4(),
        resource={"prefect.resource.id": f"prefect.flow-run.{run}", "prefect.run-count": str(run_count)},
        related=[{"prefect.resource.id": f"prefect.flow.{uuid4()}", "prefect.resource.role": "flow",
                  "prefect.resource.name": flow}])


def test_a_run_is_watched_from_running_or_a_heartbeat_until_the_next_heartbeat_or_its_end() -> None:
    silent = _triggers()["crash silent runs"]
    # Running starts the watch too: a run killed in its first second never sent a heartbeat.
    assert silent.starts_after("prefect.flow-run.Running")
    assert silent.starts_after("prefect.flow-run.heartbeat")
    for ends in ("heartbeat", "Completed", "Failed", "Cancelled", "Crashed"):
        assert silent.expects(f"prefect.flow-run.{ends}")
    assert not silent.expects("prefect.flow-run.Paused")  # a paused run still beats: silence is death
    assert silent.covers(_event("prefect.flow-run.heartbeat", flow="posture-audit"))
    assert not silent.covers(_event("prefect.flow-run.heartbeat", flow="someone-elses-flow"))


def test_a_claim_is_watched_until_its_run_starts() -> None:
    unstarted = _triggers()["crash unstarted claims"]
    assert unstarted.starts_after("prefect.flow-run.Pending")
    assert unstarted.expects("prefect.flow-run.Running")
    assert not unstarted.expects("prefect.flow-run.Submitting")  # the launcher's own step: not a start


@pytest.mark.parametrize(("run_count", "rerun"), [(0, True), (1, True), (MAX_RUN_COUNT - 1, True),
                                                  (MAX_RUN_COUNT, False), (MAX_RUN_COUNT + 3, False)])
def test_a_crashed_playbook_run_is_scheduled_again_until_the_cap(run_count: int, rerun: bool) -> None:
    trigger = _triggers()["re-run crashed playbooks"]
    assert trigger.immediate  # reactive: acts on the Crashed event itself
    assert trigger.covers(_event("prefect.flow-run.Crashed", run_count=run_count)) is rerun


def test_only_playbooks_are_scheduled_again_and_only_on_a_crash() -> None:
    trigger = _triggers()["re-run crashed playbooks"]
    assert not trigger.covers(_event("prefect.flow-run.Crashed", flow="posture-audit"))
    assert not trigger.covers(_event("prefect.flow-run.Failed"))


def _actions() -> dict[str, Any]:
    return {a.name.removeprefix("waguard: "): a.actions[0] for a in recovery_automations(FLOWS, PLAYBOOKS)}


def test_no_action_forces_a_state() -> None:
    """Without force, Prefect refuses terminal -> Crashed: a run that ended meanwhile is left alone."""
    assert not any(action.force for action in _actions().values())
