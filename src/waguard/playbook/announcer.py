"""The incident's Slack thread: opened once (a re-run finds it), a reply per step, approvals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from waguard.playbook.approval import Announcer, Decision
from waguard.playbook.timeline import IncidentTimeline
from waguard.settings import Settings
from waguard.slack.blocks import ApprovalRequest, IncidentView, StepLine
from waguard.slack.client import MessageRef, SlackClient


@dataclass
class SlackAnnouncer(Announcer):
    """One thread per incident: opened once (a re-run finds it), a reply per step, the head updated."""

    slack: SlackClient
    settings: Settings
    incident: IncidentTimeline
    view: IncidentView
    run_id: str
    enabled: bool = True  # plan mode posts nothing
    head: MessageRef | None = None
    approvals: dict[str, list[tuple[MessageRef, ApprovalRequest]]] = field(default_factory=dict)

    async def open(self) -> None:
        if not self.enabled:
            return
        state = self.incident.state()
        if "slack_ts" in state:
            self.head = MessageRef(channel=state["slack_channel"], ts=state["slack_ts"])
            await self.say(f"Run {self.run_id} resumed this incident.")
            return
        self.head = await self.slack.open_incident(self.settings.slack.channel, self.view)
        self.incident.remember(slack_channel=self.head.channel, slack_ts=self.head.ts)

    async def say(self, text: str) -> None:
        if self.enabled and self.head:
            await self.slack.reply(self.head, text)

    async def update(self, **changes: Any) -> None:
        self.view = self.view.model_copy(update=changes)
        if self.enabled and self.head:
            # Kept so a cancellation hook, in another process, can show the final state
            # (waguard.playbook.closing).
            self.incident.remember(slack_view=self.view.model_dump(mode="json"))
            await self.slack.update_incident(self.head, self.view)

    async def step(self, name: str, summary: str, outcome: str = "done") -> None:
        steps = (*self.view.steps, StepLine(step=name, outcome=outcome, detail=summary[:500]))
        await self.update(current_step=name, steps=steps)
        await self.say(f"*{name}*: {summary}")

    # Announcer: what the approval gate tells people.
    async def request(self, step: str, nonce: str, summary: str) -> None:
        if not (self.enabled and self.head):
            return
        req = ApprovalRequest(run_id=self.run_id, step=step, nonce=nonce, summary=summary)
        ref = await self.slack.post_approval(self.head, req)
        self._remember_open(step, ref, req)
        await self.update(state="awaiting approval", current_step=step)

    async def escalate(self, step: str, nonce: str, summary: str) -> None:
        if not (self.enabled and self.head):
            return
        req = ApprovalRequest(run_id=self.run_id, step=step, nonce=nonce, summary=summary)
        esc = await self.slack.open_incident(
            self.settings.slack.escalation_channel,
            self.view.model_copy(update={"state": "ESCALATED: approval needed"}),
        )
        # The escalated copy is a second set of live buttons: remember it so `decided` disarms it too.
        self._remember_open(step, await self.slack.post_approval(esc, req), req)
        await self.say(
            f"No decision yet on *{step}*: escalated to <#{self.settings.slack.escalation_channel}>."
        )

    async def decided(self, step: str, decision: Decision) -> None:
        if not (self.enabled and self.head):
            return
        for ref, req in self.approvals.pop(step, []):
            await self.slack.mark_decided(ref, req, decision.outcome, decision.by)
        self.incident.remember(
            open_approvals=[
                a
                for a in self.incident.state().get("open_approvals", [])
                if not (a.get("run") == self.run_id and a.get("step") == step)
            ]
        )
        await self.update(state=decision.outcome)

    def _remember_open(self, step: str, ref: MessageRef, req: ApprovalRequest) -> None:
        """Live buttons, kept in memory and in the incident state (a hook or a re-run disarms them)."""
        self.approvals.setdefault(step, []).append((ref, req))
        item = {"run": self.run_id, "step": step, "channel": ref.channel, "ts": ref.ts,
                "request": req.model_dump(mode="json")}
        self.incident.remember(open_approvals=[*self.incident.state().get("open_approvals", []), item])
