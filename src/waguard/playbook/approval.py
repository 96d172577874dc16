"""Human approval before destructive steps, on Prefect's pause.

How a decision reaches a paused run:
- Prefect UI: the responder fills the typed form (`ApprovalForm`) the pause renders; the form is the vote.
- Slack: the intake service verifies the click, stores the vote as a flow-run input under
  `vote_prefix(step)` (durable: a click that lands before the pause is registered is not lost), then
  wakes the pause (`wake_pause`). The gate re-reads stored votes whenever it wakes.

A wake ends the pause without any run input (Paused -> Running, as a resume does, minus the answer),
so the form a person sees holds only their own fields and nothing they pick can be mistaken for, or
discard, a vote: `ApprovalForm.aload` returns None when the pause ended without a form.

Two Prefect traps shape this (see reference/prefect-notes.md §1.3): a pause that times out fails the
run beyond repair, so the gate never lets one expire. It pauses until the next deadline it cares
about (escalation, then the final timeout) and arms a watchdog in the flow's own event loop that
wakes the pause first; Prefect's own timeout is set later as a backstop. A
premature wake is harmless: the loop re-reads the clock and pauses again.

The gate publishes its state as the flow-run input `gate_key(step)` ({"step", "nonce", "open"}) so the
intake can refuse a stale click (wrong nonce, or a step already decided).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import PrefectHTTPStatusError
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from prefect.input.actions import aread_flow_run_input, ensure_flow_run_id
from prefect.states import Running
from pydantic import BaseModel, Field

from waguard.playbook.policy import PlaybookPolicy, Severity, TimeoutAction, Verdict, Vote, tally
from waguard.playbook.timeline import IncidentRecord

PAUSE_BACKSTOP_S = 120  # Prefect's own pause timeout sits this far past our watchdog


class ApprovalForm(RunInput):
    """What the Prefect UI asks a responder: every submitted form is a vote. No defaults on the two
    required fields, so the UI neither marks them optional nor pre-picks a decision."""

    approver: str = Field(min_length=1,
                          description="Your approver id from the runbook policy (e.g. your Slack user id).")
    decision: Literal["approve", "deny"] = Field(
        description="approve: carry out the steps above; deny: stop them.")
    note: str = Field("", max_length=500, description="Why (goes on the incident timeline).")

    @classmethod
    async def aload(cls, keyset: Any, flow_run_id: UUID | None = None) -> ApprovalForm | None:  # type: ignore[override]
        """The responder's form, or None when the pause was woken (`wake_pause`) rather than answered."""
        run_id = ensure_flow_run_id(flow_run_id)
        if await aread_flow_run_input(keyset["response"], flow_run_id=run_id) is None:
            return None
        return await super().aload(keyset, flow_run_id=run_id)


async def wake_pause(client: Any, run_id: UUID, key: str | None = None) -> bool:
    """End the run's current pause (only the one named `key`, if given) without answering its form.

    The waiting loop then re-reads what it waits on (stored votes, updates, its clock). Returns
    whether a pause was ended; a pause that ended meanwhile is left alone.
    """
    run = await client.read_flow_run(run_id)
    state = run.state
    if not (state and state.is_paused()) or (key is not None and state.state_details.pause_key != key):
        return False
    result = await client.set_flow_run_state(run_id, Running())
    return result.status is SetStateStatus.ACCEPT


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


Outcome = Literal["approved", "denied", "held", "proceeded", "superseded", "closed"]  # closed: the run ended first


@dataclass(frozen=True)
class Decision:
    """How an approval step ended."""

    outcome: Outcome
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
    incident: IncidentRecord
    announcer: Announcer = field(default_factory=Announcer)
    poll_interval_s: int = 2
    timeout_s: int | None = None         # overrides policy.approval_timeout_s (drills, tests)
    escalate_after_s: int | None = None  # overrides policy.escalation.after_s
    clock: Callable[[], float] = time.monotonic
    actions: list[list[str]] | None = None  # what approving covers (waguard.playbook.scope), kept on "decided"
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
        wait_s = max(wait_s, 0.5)
        watchdog = asyncio.create_task(self._watch(key, self.clock() + wait_s, seen))
        try:
            # Only the description: an initial value would make its field optional in the UI's form.
            prompt = ApprovalForm.with_initial_data(
                description=summary + f"\n\nApprovers: {', '.join(self.policy.approvers)} "
                f"(quorum {self.policy.quorum}).")
            return await apause_flow_run(wait_for_input=prompt, timeout=int(wait_s) + PAUSE_BACKSTOP_S,
                                         poll_interval=self.poll_interval_s, key=key)
        finally:
            watchdog.cancel()

    async def _watch(self, key: str, wake_at: float, seen: set[str]) -> None:
        """Wake our own pause at `wake_at`, or as soon as a stored vote arrives.

        Votes are stored by the intake, which wakes the pause itself when it can; polling here
        covers a vote that landed between our last read and the pause being registered.
        """
        async with get_client() as client:
            while True:
                await asyncio.sleep(self.poll_interval_s)
                new_votes = await client.filter_flow_run_input(self.run_id, vote_prefix(self.step), 1, seen)
                if not new_votes and self.updates is not None:
                    new_votes = await self.updates.pending()
                if not new_votes and self.clock() < wake_at:
                    continue
                # Only wake the pause this watchdog was armed for; a later one has its own watchdog.
                if await wake_pause(client, self.run_id, key):
                    return

    async def _stored_votes(self, nonce: str, seen: set[str]) -> list[Vote]:
        async with get_client() as client:
            inputs = await client.filter_flow_run_input(self.run_id, vote_prefix(self.step), 100, seen)
        votes = []
        for item in sorted(inputs, key=lambda i: i.created or 0):
            seen.add(item.key)
            try:
                stored = StoredVote.model_validate(json.loads(item.value))
            except ValueError:
                self.incident.append(self.step, "info", "malformed stored vote ignored", data={"key": item.key})
                continue
            if stored.nonce != nonce:
                self.incident.append(self.step, "info", "stale vote refused (wrong nonce)", actor=stored.approver)
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
