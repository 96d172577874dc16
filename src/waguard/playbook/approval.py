"""Human approval before destructive steps, on Prefect's pause.

How a decision reaches a paused run:
- Prefect UI: the responder fills the typed form (`ApprovalForm`) the pause renders; the form is the vote.
- Slack: the intake service verifies the click, stores the vote as a flow-run input under
  `vote_prefix(step)` (durable: a click that lands before the pause is registered is not lost), then
  wakes the pause (`wake_pause`). The gate re-reads stored votes whenever it wakes.

The gate waits through `waguard.playbook.pause.pause_until` (shared with manual steps): it pauses until
the next deadline it cares about (escalation, then the final timeout), woken early by a stored vote or
an alert update; a wake is not a vote (`ApprovalForm.aload` returns None).

The gate publishes its state as the flow-run input `gate_key(step)` ({"step", "nonce", "open"}) so the
intake can refuse a stale click (wrong nonce, or a step already decided).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError
from pydantic import BaseModel, Field

from waguard.playbook.pause import WakeableForm, pause_until, wake_pause
from waguard.playbook.policy import Decided, PlaybookPolicy, Severity, TimeoutAction, Verdict, Vote, tally
from waguard.playbook.timeline import IncidentTimeline

__all__ = ["ApprovalForm", "ApprovalGate", "Decision", "StoredVote", "gate_key", "submit_vote", "vote_prefix",
           "wake_pause"]


class ApprovalForm(WakeableForm):
    """What the Prefect UI asks a responder: every submitted form is a vote. No defaults on the two
    required fields, so the UI neither marks them optional nor pre-picks a decision."""

    approver: str = Field(min_length=1,
                          description="Your approver id from the runbook policy (e.g. your Slack user id).")
    decision: Literal["approve", "deny"] = Field(
        description="approve: carry out the steps above; deny: stop them.")
    note: str = Field("", max_length=500, description="Why (goes on the incident timeline).")


class StoredVote(BaseModel):
    """A vote the intake stored on the run (Slack clicks)."""

    approver: str
    decision: Literal["approve", "deny"]
    nonce: str
    channel: Literal["slack"] = "slack"


def vote_prefix(step: str) -> str:
    return f"waguard-vote-{step}"


def gate_key(step: str) -> str:
    return f"waguard-gate-{step}"


@dataclass(frozen=True)
class Decision:
    """How an approval step ended."""

    outcome: Decided
    approvers: tuple[str, ...] = ()
    by: str = ""               # who decided (a deny's author, or the policy on timeout)
    escalated: bool = False
    waited_s: float = 0.0

    @property
    def go(self) -> bool:
        return self.outcome in ("approved", "proceeded")


class Announcer:
    """What the gate tells people; the flow supplies Slack-backed callbacks (no-ops in tests)."""

    async def request(self, step: str, nonce: str, summary: str) -> None: ...
    async def escalate(self, step: str, nonce: str, summary: str) -> None: ...
    async def decided(self, step: str, decision: Decision) -> None: ...


@dataclass
class ApprovalGate:
    """One approval step of one run."""

    run_id: UUID
    step: str
    policy: PlaybookPolicy
    severity: Severity
    initiator: str | None
    incident: IncidentTimeline
    announcer: Announcer = field(default_factory=Announcer)
    poll_interval_s: int = 2
    timeout_s: int | None = None         # overrides policy.approval_timeout_s (drills, tests)
    escalate_after_s: int | None = None  # overrides policy.escalation.after_s
    clock: Callable[[], float] = time.monotonic
    actions: list[list[str]] | None = (
        None  # what approving covers (waguard.playbook.scope), kept on "decided"
    )
    updates: Any = None  # an UpdateFeed: a new alert update ends this request as "superseded"

    async def decide(self, summary: str) -> Decision:
        """Block until the step is approved, denied, or timed out, and record each vote."""
        nonce = secrets.token_urlsafe(12)
        request = secrets.token_hex(4)  # pause keys allow only lowercase letters, digits and dashes
        start = self.clock()
        timeout = self.timeout_s or self.policy.approval_timeout_s
        escalation = self.policy.escalation
        escalate_at = start + (self.escalate_after_s or (escalation.after_s if escalation else timeout))
        deadline = start + timeout
        await self._publish(nonce, open_=True)
        self.incident.append(self.step, "started", "approval requested", data={"quorum": self.policy.quorum})
        await self.announcer.request(self.step, nonce, summary)
        votes: list[Vote] = []
        seen_keys: set[str] = set()
        escalated = False
        round_ = 0
        while True:
            if self.updates is not None and await self.updates.pending():
                # The targets changed under this request: the run re-plans and asks with a new nonce.
                return await self._close(nonce, Decision("superseded", by="alert update"), ())
            votes += await self._stored_votes(nonce, seen_keys)
            result = tally(votes, self.policy, self.initiator)
            if result.verdict is not Verdict.PENDING:
                decision = Decision(
                    "approved" if result.verdict is Verdict.APPROVED else "denied",
                    tuple(result.approvers),
                    by=result.counted[-1].approver, escalated=escalated, waited_s=self.clock() - start)
                return await self._close(nonce, decision, result.refused)
            now = self.clock()
            # Escalation comes before the timeout even when one wake finds both due (a slow box, a
            # long poll): an unanswered approval is always escalated before its default applies.
            if not escalated and now >= escalate_at and escalate_at < deadline:
                escalated = True
                self.incident.append(self.step, "info", "no decision yet: escalated",
                                     data={"channel": escalation.channel if escalation else None})
                await self.announcer.escalate(self.step, nonce, summary)
            if now >= deadline:
                action = self.policy.on_timeout[self.severity]
                decision = Decision("proceeded" if action is TimeoutAction.PROCEED else "held",
                                    tuple(result.approvers), by=f"timeout-policy:{self.severity}",
                                    escalated=escalated, waited_s=now - start)
                return await self._close(nonce, decision, result.refused)
            wake_at = escalate_at if (not escalated and escalate_at < deadline) else deadline
            # A pause key is used once per run (Prefect answers a repeated key with its old input),
            # so it carries this request's id: a gate asked again for the same step pauses afresh.
            form = await self._pause(f"{self.step}-{request}-{round_}", summary, wake_at - now, seen_keys)
            round_ += 1
            if form is not None:  # None: woken (a stored vote, an update, the deadline), not answered
                votes.append(Vote(form.approver, form.decision == "approve", "ui"))
                if form.note:
                    self.incident.append(self.step, "info", "approver note", actor=form.approver,
                                         data={"note": form.note})

    async def _pause(self, key: str, summary: str, wait_s: float, seen: set[str]) -> ApprovalForm | None:
        async def news() -> bool:
            """A stored vote or an alert update arrived. The intake wakes the pause itself when it can;
            this covers one that landed between our last read and the pause being registered."""
            async with get_client() as client:
                if await client.filter_flow_run_input(self.run_id, vote_prefix(self.step), 1, seen):
                    return True
            return self.updates is not None and bool(await self.updates.pending())

        # Only the description: an initial value would make its field optional in the UI's form.
        prompt = ApprovalForm.with_initial_data(
            description=summary + f"\n\nApprovers: {', '.join(self.policy.approvers)} "
            f"(quorum {self.policy.quorum}).")
        return await pause_until(prompt, run_id=self.run_id, key=key, wait_s=wait_s,
                                 poll_interval_s=self.poll_interval_s, woken=news, clock=self.clock)

    async def _stored_votes(self, nonce: str, seen: set[str]) -> list[Vote]:
        async with get_client() as client:
            inputs = await client.filter_flow_run_input(self.run_id, vote_prefix(self.step), 100, seen)
        votes = []
        for item in sorted(inputs, key=lambda i: i.created or 0):
            seen.add(item.key)
            try:
                stored = StoredVote.model_validate(json.loads(item.value))
            except ValueError:
                self.incident.append(
                    self.step, "info", "malformed stored vote ignored", data={"key": item.key}
                )
                continue
            if stored.nonce != nonce:
                self.incident.append(
                    self.step, "info", "stale vote refused (wrong nonce)", actor=stored.approver
                )
                continue
            votes.append(Vote(stored.approver, stored.decision == "approve", "slack"))
        return votes

    async def _publish(self, nonce: str, *, open_: bool) -> None:
        value = json.dumps({"step": self.step, "nonce": nonce, "open": open_})
        async with get_client() as client:
            try:  # replace, not add: one gate record per step
                await client.delete_flow_run_input(self.run_id, gate_key(self.step))
            except PrefectHTTPStatusError as err:
                if err.response.status_code != 404:
                    raise
            await client.create_flow_run_input(self.run_id, gate_key(self.step), value)

    async def _close(self, nonce: str, decision: Decision, refused: tuple[tuple[Vote, str], ...]) -> Decision:
        for vote, reason in refused:
            self.incident.append(self.step, "info", f"vote refused: {reason}", actor=vote.approver,
                                 data={"channel": vote.channel})
        await self._publish(nonce, open_=False)
        self.incident.append(self.step, "decided", decision.outcome, actor=decision.by,
                             data={"approvers": list(decision.approvers), "escalated": decision.escalated,
                                   "waited_s": round(decision.waited_s, 3),
                                   **({"actions": self.actions} if self.actions is not None else {})})
        await self.announcer.decided(self.step, decision)
        return decision



# --- the other side: delivering a Slack vote to a run (used by the intake service) ---------------

SubmitOutcome = Literal["accepted", "stale", "closed", "no-such-step"]


async def submit_vote(run_id: UUID, step: str, vote: StoredVote) -> SubmitOutcome:
    """Store a verified vote on the run and wake its pause.

    The caller has checked the Slack signature and the approver policy. Here the run decides: a run
    that has ended or is being cancelled takes no vote (its gate record may still say open: a
    cancelled or crashed run never closes it), nor does a closed step or another step's nonce.
    """
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        if run.state is not None and (run.state.is_final() or run.state.type.value == "CANCELLING"):
            return "closed"
        try:
            gate = json.loads(await client.read_flow_run_input(run_id, gate_key(step)))
        except PrefectHTTPStatusError as err:
            if err.response.status_code != 404:
                raise
            # The run has not opened this gate yet. Keep the vote: the gate reads stored votes first
            # thing, and refuses it there if its nonce turns out not to match.
            gate = None
        if gate is not None and not gate.get("open"):
            return "closed"
        if gate is not None and not secrets.compare_digest(str(gate.get("nonce", "")), vote.nonce):
            return "stale"
        await client.create_flow_run_input(run_id, f"{vote_prefix(step)}-{secrets.token_hex(8)}",
                                           vote.model_dump_json(), sender="waguard-intake")
        # Wake whichever pause is current; the gate re-reads the stored votes when it wakes.
        await wake_pause(client, run_id)
        return "accepted" if gate is not None else "no-such-step"
