"""What every playbook run does around its own steps: open the incident, its ports and Slack thread;
snapshot evidence; ask for approval; and close with a summary that links the run and the evidence.

Flows read as their runbook because all of this lives here, behind a few verbs on `PlaybookRun`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from prefect.artifacts import acreate_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency
from prefect.runtime import flow_run

from waguard.approval import ApprovalGate, Decision
from waguard.containment import StepReport
from waguard.incident import IncidentRecord
from waguard.manual import ManualStep
from waguard.playbooks import FLOW_NAMES
from waguard.policy import Playbook, PlaybookPolicy, Severity, load_policy
from waguard.runtime import Effects, PlannedCall, Ports, SlackAnnouncer, open_ports
from waguard.settings import Settings, load_settings
from waguard.slack.blocks import IncidentView

RUN_SLOT_WAIT_S = 150  # a second run for the same playbook and WABA waits this long, then fails clearly
# A run's slot is a lease the run renews while alive. Prefect's shortest (60 s) bounds how long a
# killed run blocks its own re-run: the server's repossessor frees the slot soon after it lapses.
RUN_SLOT_LEASE_S = 60
Status = Literal["contained", "held", "denied", "planned", "failed"]


@dataclass
class PlaybookRun:
    playbook: Playbook
    incident_id: str
    severity: Severity
    initiator: str | None
    plan: bool
    settings: Settings
    policy: PlaybookPolicy
    incident: IncidentRecord
    ports: Ports
    fx: Effects
    slack: SlackAnnouncer
    started_at: datetime
    run_id: UUID
    approval_timeout_s: int | None = None
    poll_interval_s: int = 2
    reports: list[StepReport] = field(default_factory=list)
    evidence: list[Any] = field(default_factory=list)

    @property
    def run_url(self) -> str:
        return f"{self.settings.prefect.ui_url}/runs/flow-run/{self.run_id}"

    async def record(self, report: StepReport) -> StepReport:
        """Put a step's report on the timeline and in the Slack thread."""
        self.reports.append(report)
        if not self.plan:
            self.incident.append(report.step, "done" if report.verified else "info", report.summary,
                                 data=report.model_dump(exclude={"step"}))
        await self.slack.step(report.step, report.summary,
                              "planned" if self.plan else "done" if report.verified else "failed")
        return report

    async def approve(self, step: str, summary: str) -> Decision:
        """Pause for the policy's approvers. Plan mode does not pause: it reports what it would ask."""
        if self.plan:
            return Decision("approved", by="plan-mode")
        earlier = self.incident.last(step, "decided")
        if earlier is not None and earlier.detail in ("approved", "proceeded"):
            # A re-run of this incident (after a crash, say) resumes under the decision already taken.
            self.incident.append(step, "already", f"re-run under the earlier decision: {earlier.detail}",
                                 actor=earlier.actor)
            await self.slack.say(f"*{step}*: already {earlier.detail} by {earlier.actor}; resuming.")
            return Decision(earlier.detail, tuple(earlier.data.get("approvers", [])), by=earlier.actor or "")  # type: ignore[arg-type]
        gate = ApprovalGate(self.run_id, step, self.policy, self.severity, self.initiator, self.incident,
                            self.slack, poll_interval_s=self.poll_interval_s, timeout_s=self.approval_timeout_s)
        return await gate.decide(summary)

    def fx_manual(self, step: str, target: str) -> PlannedCall:
        """How plan mode lists a manual step."""
        return PlannedCall(step=step, target=target, call="manual: App Dashboard, then vault kv put")

    def manual(self, step: str, check) -> ManualStep:  # type: ignore[no-untyped-def]
        return ManualStep(self.run_id, step, self.incident, check,
                          timeout_s=self.approval_timeout_s or self.policy.approval_timeout_s,
                          poll_interval_s=self.poll_interval_s)

    async def snapshot(self, phase: Literal["open", "close"]) -> None:
        """Evidence before the first containment step and after the last (never in plan mode)."""
        if self.plan:
            return
        from tasks.evidence import snapshot_evidence  # the task module sits beside flows/

        ref = await snapshot_evidence(self, phase)
        self.evidence.append(ref)

    async def finish(self, status: Status, detail: str = "") -> dict[str, Any]:
        """Close the run: timeline, Slack summary, Prefect artifact. Returns a small, non-secret result."""
        result: dict[str, Any] = {
            "incident_id": self.incident_id, "playbook": self.playbook, "status": status, "detail": detail,
            "steps": [r.model_dump() for r in self.reports],
            "evidence": [getattr(e, "path", str(e)) for e in self.evidence],
        }
        if self.plan:
            result["planned_calls"] = [c.model_dump() for c in self.fx.planned]
            lines = [f"| {c.step} | `{c.target}` | `{c.call}` |" for c in self.fx.planned]
            await acreate_markdown_artifact(
                key=f"plan-{self.playbook.replace('_', '-')}",
                markdown=f"# Plan for {self.incident_id}\n\nNo call was made. These would be:\n\n"
                "| step | target | call |\n|---|---|---|\n" + "\n".join(lines),
                description="Read-only preview of a playbook run")
            return result
        self.incident.append("close", "done", status, data={"detail": detail})
        evidence = "; ".join(f"{getattr(e, 'path', e)} (sha256 {getattr(e, 'sha256', '?')[:16]}…)"
                             for e in self.evidence) or "none"
        summary = (f"*{status.upper()}* — {detail}\nRun: {self.run_url}\nEvidence: {evidence}\n"
                   + "\n".join(f"• {r.step}: {r.summary}" for r in self.reports))
        await self.slack.say(summary)
        await self.slack.update(state=status, prefect_run_url=self.run_url)
        await acreate_markdown_artifact(
            key=f"incident-{self.playbook.replace('_', '-')}", markdown=summary.replace("*", "**"),
            description=f"Outcome of {self.incident_id}")
        return result


@contextlib.asynccontextmanager
async def one_run_per_waba(playbook: Playbook, waba_id: str, plan: bool) -> AsyncIterator[None]:
    """At most one active run per playbook and WABA: a global concurrency limit we create ourselves
    (with strict=True a missing limit is an error, not the silent no-op of the default)."""
    if plan:  # a read-only preview may run beside a real run
        yield
        return
    name = f"waguard:{playbook}:{waba_id}"
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(name, 1)
    async with concurrency(name, occupy=1, timeout_seconds=RUN_SLOT_WAIT_S, lease_duration=RUN_SLOT_LEASE_S,
                           strict=True):
        yield


@contextlib.asynccontextmanager
async def playbook_run(playbook: Playbook, *, incident_id: str, severity: Severity, initiator: str | None,
                       plan: bool, title: str, approval_timeout_s: int | None = None,
                       poll_interval_s: int = 2, settings: Settings | None = None) -> AsyncIterator[PlaybookRun]:
    settings = settings or load_settings()
    policy = load_policy(settings.runbooks_dir, playbook)
    # Plan runs keep their own record so a preview never touches the real incident's timeline.
    incident = IncidentRecord(settings.incidents_dir, f"{incident_id}.plan" if plan else incident_id)
    started = incident.state().get("started_at")
    if started is None:
        started = datetime.now(UTC).isoformat()
        incident.remember(started_at=started)
    run_id = UUID(flow_run.id)
    async with one_run_per_waba(playbook, settings.meta.waba_id, plan), open_ports(settings) as ports:
        view = IncidentView(incident_id=incident_id, playbook=FLOW_NAMES[playbook], title=title,
                            severity=severity, state="open", current_step="opened",
                            prefect_run_url=f"{settings.prefect.ui_url}/runs/flow-run/{run_id}")
        slack = SlackAnnouncer(ports.slack, settings, incident, view, str(run_id), enabled=not plan)
        run = PlaybookRun(playbook, incident_id, severity, initiator, plan, settings, policy, incident, ports,
                          Effects(plan, incident, settings.meta.graph_version), slack,
                          datetime.fromisoformat(started), run_id, approval_timeout_s, poll_interval_s)
        if not plan:
            incident.append("open", "started", f"{playbook} run {run_id}", actor=initiator or "waguard")
        await slack.open()
        try:
            yield run
        except Exception as err:
            if not plan:
                incident.append("close", "failed", type(err).__name__, data={"message": str(err)[:300]})
                await slack.say(f"*FAILED SAFE* at {slack.view.current_step}: {type(err).__name__}: "
                                f"{str(err)[:300]}\nRun: {run.run_url}")
                await slack.update(state="failed")
            raise
