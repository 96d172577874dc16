"""Runs of a launcher that died with its machine: Prefect crashes them and another launcher runs them again.

A live launcher marks its own dead children Crashed at once (Prefect's FlowRunExecutor). When the
launcher itself dies (the machine, or a SIGKILL of its process group) nothing is left to report its
runs, so the scaled profile uses Prefect's own mechanism (prefect-fast-start-and-scale.md B.4):

- each run process emits `prefect.flow-run.heartbeat` every HEARTBEAT_S (HEARTBEAT_ENV, set for the
  launchers, whose zygote and runs inherit it; Prefect's floor is 30 s);
- SILENT: a proactive trigger per run: Running or a heartbeat followed by neither a heartbeat nor an
  end within SILENT_AFTER_S (3 heartbeats, Prefect's advice: one late beat must not crash a live run)
  -> Crashed. Prefect's zombie automation (docs: advanced/detect-zombie-flows), plus Running as a
  start: a run killed in its first second never sent a heartbeat (seen: 3 of 4 killed runs);
- UNSTARTED: a claim (Pending) followed by neither Running nor an end within CLAIM_S -> Crashed (the
  launcher died between its claim and the run's start: no heartbeat ever came);
- RERUN: Crashed of a playbook run -> Scheduled (AwaitingRetry); any launcher's poll claims it and the
  playbook resumes from its incident timeline (a destructive step already recorded is not repeated).
  Only while the Crashed event's `prefect.run-count` label is below MAX_RUN_COUNT, so a run that
  crashes every time stays Crashed instead of looping. Prefect counts every entry into Running, the
  resume after an approval included: 6 is 3 attempts of a run with one approval, 2 with two. A run
  that crashed before ever reaching Running (count 0) does not count up: the cap cannot bound that case.

Prefect then frees the dead run's WABA slot itself: its lease (60 s, kept on the dead machine) lapses
and the repossessor revokes it, before SILENT_AFTER_S has passed. Every transition here is proposed
without `force`, so a run that ended meanwhile is left alone (Prefect refuses terminal -> Crashed).

Automations are one set per Prefect installation, so they are created by whoever sets Prefect up
(`waguard up --profile scaled`, or an operator running `ensure_recovery_automations` once), not by each
`waguard worker`: Prefect does not make automation names unique, and workers starting together would
race to create copies (two RERUN copies schedule a run twice, harmless; two sets are still clutter).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

HEARTBEAT_S = 30
HEARTBEAT_ENV = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}
SILENT_AFTER_S = 3 * HEARTBEAT_S
CLAIM_S = 60  # a live launcher forks within milliseconds; the run reports Running within seconds
MAX_RUN_COUNT = 6
PREFIX = "waguard: "
ENDS = {"prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
        "prefect.flow-run.Crashed"}


def recovery_automations(flow_names: Iterable[str], playbook_flow_names: Iterable[str]) -> list[Any]:
    """The three automations (AutomationCore) for runs of `flow_names`; RERUN only for the playbooks'."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    def runs_of(names: Iterable[str]) -> dict[str, Any]:
        return {"match": {"prefect.resource.id": "prefect.flow-run.*"},
                "match_related": {"prefect.resource.role": "flow", "prefect.resource.name": sorted(names)},
                "for_each": {"prefect.resource.id"}}

    def crash(why: str) -> ChangeFlowRunState:
        return ChangeFlowRunState(state=StateType.CRASHED, name="Crashed", message=why)

    flows = list(flow_names)
    return [
        AutomationCore(
            name=f"{PREFIX}crash silent runs",
            description="A run that stopped sending heartbeats (its launcher or machine died) is Crashed.",
            trigger=EventTrigger(
                **runs_of(flows), after={"prefect.flow-run.Running", "prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", *ENDS}, posture=Posture.Proactive,
                threshold=1, within=timedelta(seconds=SILENT_AFTER_S)),
            actions=[crash(f"no heartbeat for {SILENT_AFTER_S} s: its launcher or machine died")]),
        AutomationCore(
            name=f"{PREFIX}crash unstarted claims",
            description="A run claimed by a launcher that died before starting it is Crashed.",
            trigger=EventTrigger(**runs_of(flows), after={"prefect.flow-run.Pending"},
                                 expect={"prefect.flow-run.Running", "prefect.flow-run.heartbeat", *ENDS},
                                 posture=Posture.Proactive, threshold=1, within=timedelta(seconds=CLAIM_S)),
            actions=[crash(f"claimed but not started within {CLAIM_S} s: its launcher died")]),
        AutomationCore(
            name=f"{PREFIX}re-run crashed playbooks",
            description=f"A crashed playbook run is scheduled again while its run count is below "
                        f"{MAX_RUN_COUNT}; it resumes from its incident timeline.",
            trigger=EventTrigger(
                match={"prefect.resource.id": "prefect.flow-run.*",
                       "prefect.run-count": [str(n) for n in range(MAX_RUN_COUNT)]},
                match_related={"prefect.resource.role": "flow",
                               "prefect.resource.name": sorted(playbook_flow_names)},
                for_each={"prefect.resource.id"}, after=set(), expect={"prefect.flow-run.Crashed"},
                posture=Posture.Reactive, threshold=1, within=timedelta(0)),
            actions=[ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry",
                                        message="crashed: run again by another launcher")]),
    ]


async def ensure_recovery_automations(client: Any, flow_names: Iterable[str],
                                      playbook_flow_names: Iterable[str]) -> list[str]:
    """Create or update the automations by name (idempotent); returns their names."""
    wanted = recovery_automations(flow_names, playbook_flow_names)
    for automation in wanted:
        existing = await client.read_automations_by_name(automation.name)
        if existing:
            await client.update_automation(existing[0].id, automation)
            for extra in existing[1:]:  # a copy left by an earlier race
                await client.delete_automation(extra.id)
        else:
            await client.create_automation(automation)
    return [a.name for a in wanted]
