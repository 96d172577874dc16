"""What a scheduled hygiene run does around its steps: its incident-style timeline, Slack thread and
Prefect artifact. Lighter than `PlaybookRun`: no approval (nothing here is a containment the team has
not already approved as policy), no per-WABA slot, but the same record of every step.

Each run has its own record, `<incidents_dir>/<deployment>-<run id>`, opened with the WABA so the
intake's `waguard_playbook_action_last_seconds` counts its token and PIN changes as waguard's own.
State that outlives a run (pending revocations, the audit's last findings) is kept in
`<incidents_dir>/<deployment>-state`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from prefect.artifacts import acreate_markdown_artifact
from prefect.runtime import flow_run

from waguard.playbook.announcer import SlackAnnouncer
from waguard.playbook.effects import Effects
from waguard.playbook.hygiene_policy import HygienePolicy, load_hygiene_policy
from waguard.playbook.manual import ManualStep
from waguard.playbook.ports import Ports, open_ports
from waguard.playbook.timeline import IncidentTimeline
from waguard.settings import Settings, load_settings
from waguard.slack.blocks import IncidentView
from waguard.state.backends import open_timelines
from waguard.steps.report import StepReport


@dataclass
class ScheduledRun:
    deployment: str
    settings: Settings
    policy: HygienePolicy
    record: IncidentTimeline
    state: IncidentTimeline
    ports: Ports
    fx: Effects
    slack: SlackAnnouncer
    run_id: UUID
    started_at: datetime
    plan: bool
    reports: list[StepReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def run_url(self) -> str:
        return f"{self.settings.prefect.ui_url}/runs/flow-run/{self.run_id}"

    async def open_thread(self, title: str, severity: str = "SEV3") -> None:
        """Open the Slack thread (only when there is something to say: a quiet run posts nothing)."""
        if self.slack.head is None and not self.plan:
            self.slack.view = self.slack.view.model_copy(update={"title": title, "severity": severity})
            await self.slack.open()

    async def record_step(self, report: StepReport) -> StepReport:
        """On the timeline always; in Slack when it changed something."""
        self.reports.append(report)
        if not self.plan:
            self.record.append(report.step, "done" if report.verified else "info", report.summary,
                               data=report.model_dump(exclude={"step"}))
        if report.acted and not self.plan:
            await self.open_thread(f"{self.deployment}: credentials rotated")
            await self.slack.step(report.step, f"{report.summary}: {', '.join(report.acted)}")
        return report

    def manual(self, step: str, check: Callable[[], Awaitable[bool]], timeout_s: int) -> ManualStep:
        return ManualStep(self.run_id, step, self.record, check, timeout_s=timeout_s, poll_interval_s=5)

    async def finish(self, status: str, markdown: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Close the record, say so in the thread if one opened, publish the artifact."""
        result = {"deployment": self.deployment, "record": self.record.incident_id, "status": status,
                  "steps": [r.model_dump() for r in self.reports], **(extra or {})}
        if not self.plan:
            self.record.append("close", "done", status, data={"run": str(self.run_id)})
            if self.slack.head is not None:
                await self.slack.say(f"*{status.upper()}*\nRun: {self.run_url}\n" + "\n".join(self.notes))
                await self.slack.update(state=status)
        await acreate_markdown_artifact(key=self.deployment, markdown=markdown,
                                        description=f"{self.deployment}: {status}")
        return result


def current_run_id() -> UUID:
    return UUID(flow_run.id) if flow_run.id else uuid4()


@contextlib.asynccontextmanager
async def scheduled_run(deployment: str, *, plan: bool = False,
                        settings: Settings | None = None) -> AsyncIterator[ScheduledRun]:
    settings = settings or load_settings()
    policy = load_hygiene_policy(settings.runbooks_dir, settings.meta.waba_id)
    run_id = current_run_id()
    timelines = open_timelines(settings)
    record = timelines.open(f"{deployment}-{run_id}" + (".plan" if plan else ""))
    state = timelines.open(f"{deployment}-state")
    async with open_ports(settings) as ports:
        view = IncidentView(
            incident_id=record.incident_id,
            playbook=deployment,
            title=deployment,
            severity="SEV3",
            state="open",
            current_step="opened",
            prefect_run_url=f"{settings.prefect.ui_url}/runs/flow-run/{run_id}",
        )
        slack = SlackAnnouncer(ports.slack, settings, record, view, str(run_id), enabled=not plan)
        run = ScheduledRun(deployment, settings, policy, record, state, ports,
                           Effects(plan, record, settings.meta.graph_version), slack, run_id,
                           datetime.now(UTC), plan)
        if not plan:
            record.append("open", "started", f"{deployment} run {run_id}", actor="schedule",
                          data={"waba_id": settings.meta.waba_id})
        try:
            yield run
        except Exception as err:
            if not plan:
                record.append("close", "failed", f"{type(err).__name__}: {str(err)[:300]}")
                await run.open_thread(f"{deployment} failed", "SEV2")
                await slack.say(
                    f"*FAILED* at {slack.view.current_step}: {type(err).__name__}. Run: {run.run_url}"
                )
            raise
