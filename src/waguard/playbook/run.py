"""What every playbook run does around its own steps: open the incident, its ports and Slack thread;
wait its turn on the WABA; snapshot evidence; ask for approval of exactly the actions it plans (again
when alert updates change them); and close with a summary that links the run and the evidence.

Flows read as their runbook because all of this lives here, behind a few verbs on `PlaybookRun`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from prefect.artifacts import acreate_markdown_artifact
from prefect.runtime import flow_run

from waguard.playbook.accounts import Account, account_for
from waguard.playbook.announcer import SlackAnnouncer
from waguard.playbook.approval import ApprovalGate, Decision
from waguard.playbook.closing import close_incident, close_leftovers, quick_incident_id
from waguard.playbook.effects import Effects, PlannedCall
from waguard.playbook.manual import ManualStep
from waguard.playbook.names import FLOW_NAMES
from waguard.playbook.parameters import PlaybookParameters
from waguard.playbook.policy import Playbook, PlaybookPolicy, Severity, load_policy
from waguard.playbook.ports import GraphKeys, Ports, open_ports
from waguard.playbook.scope import Action, Scope, actions_from, covered_by
from waguard.playbook.slot import Entrant, IncidentClosedWhileWaiting, SlotQueue, hold_slot
from waguard.playbook.timeline import IncidentTimeline
from waguard.playbook.updates import UpdateFeed, merge_targets
from waguard.settings import Settings, load_settings
from waguard.slack.blocks import IncidentView
from waguard.state.backends import open_timelines
from waguard.steps.report import StepReport

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
    account: Account  # the business, app and WABA this run acts on, and that WABA's ids
    incident: IncidentTimeline
    ports: Ports
    fx: Effects
    slack: SlackAnnouncer
    started_at: datetime
    run_id: UUID
    approval_timeout_s: int | None = None
    poll_interval_s: int = 2
    reports: list[StepReport] = field(default_factory=list)
    evidence: list[Any] = field(default_factory=list)
    targets: dict[str, list[str]] = field(default_factory=dict)  # list parameters alert updates extend
    updates: UpdateFeed | None = None
    resolved: bool = False  # the alert resolved at its source
    approved: set[Action] = field(default_factory=set)  # approved in this run, all rounds

    @property
    def waba_id(self) -> str:
        return self.account.waba_id

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

    async def take_updates(self) -> None:
        """Apply alert updates the intake stored on this run: new targets, or the source resolving."""
        if self.plan or self.updates is None:
            return
        for update in await self.updates.take():
            if update.kind == "resolved":
                self.resolved = True
                self.incident.append("alert-update", "info",
                                     f"the alert resolved at its source ({update.source})",
                                     data={"on_resolve": self.policy.on_resolve})
                keep = self.policy.on_resolve == "keep_asking"
                await self.slack.say(f"*Alert resolved* at its source ({update.source}). Policy: "
                                     + ("containment stays a human decision; still asking." if keep
                                        else "a pending approval is held."))
                continue
            merged = merge_targets(self.targets, update.parameters, FILTER_PARAMETERS)
            added = {k: [v for v in merged[k] if v not in self.targets[k]] for k in merged}
            added = {k: v for k, v in added.items() if v}
            self.targets = merged
            self.incident.append("alert-update", "info", f"joined: {added or 'no new target'}",
                                 data={"added": added, "source": update.source})
            news = ", ".join(f"{k} +{v}" for k, v in added.items()) if added else "no new target."
            await self.slack.say(f"*Alert update* ({update.source}): {news}")

    async def more_updates(self) -> bool:
        """True when updates arrived that the run has not applied (after approval: plan again)."""
        return not self.plan and self.updates is not None and await self.updates.pending()

    def _approved_before(self, step: str, scope: Scope) -> Any:
        """The earliest approval on this incident's timeline that covers everything `scope` plans."""
        for event in self.incident.events():
            if (event.step == step and event.outcome == "decided"
                    and event.detail in ("approved", "proceeded") and "actions" in event.data
                    and covered_by(scope.actions, actions_from(event.data["actions"]))):
                return event
        return None

    async def approve(self, step: str, plan: Callable[[], Awaitable[Scope]]) -> tuple[Decision, Scope]:
        """Plan, then pause for the policy's approvers to approve exactly that plan.

        An earlier approval on this incident is reused only when it covered every action planned now;
        an alert update while asking re-plans and asks again. Plan mode does not pause.
        """
        while True:
            await self.take_updates()
            scope = await plan()
            if self.plan:
                return Decision("approved", by="plan-mode"), scope
            if self.resolved and self.policy.on_resolve == "hold" and not self.approved:
                self.incident.append(step, "skipped", "held: the alert resolved before a decision")
                return Decision("held", by="on_resolve-policy"), scope
            if not scope.actions:
                self.incident.append(step, "skipped", "nothing destructive planned: no approval needed")
                await self.slack.say(f"*{step}*: nothing destructive to do; no approval needed.")
                return Decision("approved", by="nothing-to-approve"), scope
            if covered_by(scope.actions, self.approved):
                return Decision("approved", by="this run's approval"), scope
            earlier = self._approved_before(step, scope)
            if earlier is not None:
                # A re-run of this incident (after a crash, say) acts under the decision already taken,
                # because that decision named every action planned now.
                self.incident.append(step, "already", f"re-run under the earlier decision: {earlier.detail}",
                                     actor=earlier.actor, data={"decided_seq": earlier.seq,
                                                                "actions": scope.stored()})
                await self.slack.say(f"*{step}*: already {earlier.detail} by {earlier.actor} for these "
                                     "actions; resuming.")
                self.approved |= set(scope.actions)
                return Decision(earlier.detail, tuple(earlier.data.get("approvers", [])),
                                by=earlier.actor or ""), scope
            gate = ApprovalGate(self.run_id, step, self.policy, self.severity, self.initiator, self.incident,
                                self.slack, poll_interval_s=self.poll_interval_s,
                                timeout_s=self.approval_timeout_s, actions=scope.stored(),
                                updates=self.updates)
            bullets = "\n".join(f"• {line}" for line in scope.lines())
            summary = f"{scope.summary}\n\n*Approving will:*\n{bullets}"
            decision = await gate.decide(summary)
            if decision.outcome == "superseded":
                continue
            if decision.go:
                self.approved |= set(scope.actions)
            return decision, scope

    def fx_manual(self, step: str, target: str) -> PlannedCall:
        """How plan mode lists a manual step."""
        return PlannedCall(step=step, target=target, call="manual: App Dashboard, then vault kv put")

    def manual(self, step: str, check: Callable[[], Awaitable[bool]]) -> ManualStep:
        return ManualStep(self.run_id, step, self.incident, check,
                          timeout_s=self.approval_timeout_s or self.policy.approval_timeout_s,
                          poll_interval_s=self.poll_interval_s)

    async def snapshot(self, phase: Literal["open", "close"]) -> None:
        """Evidence before the first containment step and after the last (never in plan mode)."""
        if self.plan:
            return
        from waguard.steps.evidence import snapshot_evidence  # the task module sits beside flows/

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
        await self.take_updates()  # updates that came too late for this run are at least on the record
        self.incident.append("close", "done", status, data={"detail": detail, "run": str(self.run_id)})
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
async def one_run_per_waba(run: PlaybookRun, opened_seq: int) -> AsyncIterator[None]:
    """At most one active run per playbook and WABA; the others wait in arrival order, visibly."""
    if run.plan:  # a read-only preview may run beside a real run
        yield
        return
    waba_id = run.waba_id

    async def announce(holder: Entrant | None, ahead: int) -> None:
        who = (f"run {holder.run_id} (incident {holder.incident_id})" if holder
               else "a run that has ended (its slot frees when its lease lapses)")
        text = f"waiting behind {who}" + (f"; {ahead} earlier incident(s) wait before this one"
                                          if ahead else "")
        run.incident.append("wait-for-slot", "info", text,
                            data={"holder": str(holder.run_id) if holder else None, "ahead": ahead})
        await run.slack.say(f"*Waiting*: {text}. One run at a time acts on WABA `{waba_id}`; "
                            "waiting runs go in arrival order, for as long as it takes.")
        await run.slack.update(state="waiting for the WABA", current_step="wait-for-slot")

    async def acquired(waited_s: float) -> None:
        run.incident.append("wait-for-slot", "done", f"slot taken after {waited_s:.0f} s")
        await run.slack.say(f"The WABA is free after {waited_s:.0f} s: this run goes on.")
        await run.slack.update(state="open", current_step="opened")

    def closed() -> bool:
        return closed_by_another(run.incident.events(), opened_seq, str(run.run_id))

    queue = SlotQueue(f"waguard:{run.playbook}:{waba_id}", FLOW_NAMES[run.playbook], run.run_id,
                      poll_s=max(run.poll_interval_s, 1))
    from waguard.launcher.rundir import hand_over_current_leases

    async with hold_slot(queue, announce=announce, closed=closed, acquired=acquired,
                         held=lambda: hand_over_current_leases(run.settings.launcher.dir)):
        yield


def closed_by_another(events: list[Any], opened_seq: int, run_id: str) -> bool:
    """Was the incident closed after this attempt opened it, by anything but this same flow run? (pure)

    A retried run's earlier attempt may be closed late: its crash record can land after the retry's
    own open record (the crash handling and the retry race), and must not end the retry.
    """
    return any(e.step == "close" and e.seq > opened_seq and (e.data or {}).get("run") != run_id
               for e in events)


# Target lists where empty means "all" (a filter), not "none": an update cannot narrow them.
FILTER_PARAMETERS = frozenset({"template_names", "phone_number_ids"})
TARGET_PARAMETERS: dict[Playbook, tuple[str, ...]] = {
    "template_abuse": ("template_names", "deregister_numbers"),
    "account_takeover": ("phone_number_ids", "suspect_users"),
    "leaked_secret": (),
}


@contextlib.asynccontextmanager
async def playbook_run(playbook: Playbook, params: PlaybookParameters, *, title: str,
                       targets: dict[str, list[str] | None] | None = None,
                       settings: Settings | None = None) -> AsyncIterator[PlaybookRun]:
    """Open a run of `playbook` with the flow's parameters; it acts on `params.waba_id`'s account.

    Raises:
        ConfigError: the policy is invalid, or the WABA is not in the business registry (before
            anything is opened or touched).
    """
    settings = settings or load_settings()
    policy = load_policy(settings.runbooks_dir, playbook)
    account = account_for(settings, params.waba_id)
    incident_id, severity, initiator, plan = (params.incident_id, params.severity, params.initiator,
                                              params.plan)
    title = f"{title} · WABA {account.waba_id}"
    run_id = UUID(flow_run.id)
    # A run started without an incident (the UI's Quick run) is its own incident: no approval is shared.
    incident_id = incident_id or quick_incident_id(FLOW_NAMES[playbook], run_id)
    # Plan runs keep their own record so a preview never touches the real incident's timeline.
    incident = open_timelines(settings).open(f"{incident_id}.plan" if plan else incident_id)
    started = incident.state().get("started_at")
    if started is None:
        started = datetime.now(UTC).isoformat()
        incident.remember(started_at=started)
    async with open_ports(settings, GraphKeys(account.app_secret_path, account.token_path)) as ports:
        view = IncidentView(incident_id=incident_id, playbook=FLOW_NAMES[playbook], title=title,
                            severity=severity, state="open", current_step="opened",
                            prefect_run_url=f"{settings.prefect.ui_url}/runs/flow-run/{run_id}")
        slack = SlackAnnouncer(ports.slack, settings, incident, view, str(run_id), enabled=not plan)
        run = PlaybookRun(playbook, incident_id, severity, initiator, plan, settings, policy, account,
                          incident, ports, Effects(plan, incident, settings.meta.graph_version), slack,
                          datetime.fromisoformat(started), run_id, params.approval_timeout_s,
                          params.poll_interval_s,
                          targets={k: list((targets or {}).get(k) or [])
                                   for k in TARGET_PARAMETERS[playbook]},
                          updates=UpdateFeed(run_id))
        if not plan:
            await close_leftovers(settings, incident, str(run_id), ports.slack)
            # The WABA the run acts on: the intake's metrics tell waguard's own changes from others' by it.
            acts_on = {"waba_id": account.waba_id, "business_id": account.business_id}
            opened = incident.append("open", "started", f"{playbook} run {run_id} on WABA {account.waba_id}",
                                     actor=initiator or "waguard", data=acts_on)
        await slack.open()
        try:
            async with one_run_per_waba(run, opened.seq if not plan else -1):
                yield run
        except IncidentClosedWhileWaiting:
            raise  # closed by someone else while this run waited: nothing of ours to close
        except Exception as err:
            if not plan:
                await close_incident(settings, incident, str(run_id), "failed",
                                     f"failed safe at {slack.view.current_step}: {type(err).__name__}: "
                                     f"{str(err)[:300]}", slack=ports.slack)
            raise
