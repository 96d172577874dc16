"""Slack approval clicks: a verified click becomes a vote on the paused run, or a recorded refusal.

Checks, in order (alerts-and-slack.md §4.2): the request signature and its 5-minute window (in the
app, on the raw bytes), a replayed request, the payload; then the clicking user against the union
of every playbook's approvers, *before* Prefect is asked anything; then, from the run itself, its
playbook (the flow's name), initiator (a parameter) and state: a run that has ended or is being
cancelled takes no vote; the user must be that playbook's approver and, unless the policy allows
it, not the initiator (both rules are `waguard.playbook.policy`'s, the ones the flow's tally applies). A
person's second click on the same gate is refused here; the vote goes to the run through
`waguard.playbook.approval.submit_vote`, which refuses a stale nonce or a closed step, and the flow tallies
the quorum itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import parse_qs
from uuid import UUID

from waguard.errors import WaguardError
from waguard.intake import strict_json
from waguard.playbook.approval import StoredVote, SubmitOutcome, submit_vote
from waguard.playbook.names import FLOW_NAMES
from waguard.playbook.policy import Playbook, PlaybookPolicy, identity, is_approver, is_self_approval
from waguard.slack.blocks import APPROVE, DENY, parse_button_value

_USER = re.compile(r"[A-Z0-9]{2,32}")
_ACTION_TS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


class BadClick(WaguardError):
    """The click payload is not a well-formed approval click (HTTP 400)."""


@dataclass(frozen=True)
class Click:
    """One approval button click, parsed."""

    user: str
    decision: Literal["approve", "deny"]
    run_id: UUID
    step: str
    nonce: str
    action_ts: str | None


def parse_click(body: bytes) -> Click:
    """Parse a Slack `block_actions` request body (`payload=<url-encoded JSON>`), strictly.

    Raises:
        BadClick: anything else; the message names the problem, never a value from the body.
    """
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True,
                        max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise BadClick("the body is not a URL-encoded form") from None
    payloads = form.get("payload", [])
    if len(payloads) != 1:
        raise BadClick("the form must carry exactly one 'payload' field")
    try:
        data = strict_json.loads(payloads[0])
    except strict_json.BadJson as err:
        raise BadClick(f"payload: {err}") from None
    if not isinstance(data, dict) or data.get("type") != "block_actions":
        raise BadClick("payload is not a block_actions interaction")
    user = data.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, str) or not _USER.fullmatch(user_id):
        raise BadClick("payload has no valid user.id")
    actions = data.get("actions")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(actions[0], dict):
        raise BadClick("payload must carry exactly one action")
    action = actions[0]
    if action.get("action_id") not in (APPROVE, DENY):
        raise BadClick("the action is neither approve nor deny")
    try:
        value = parse_button_value(action.get("value"))
    except ValueError as err:
        raise BadClick(str(err)) from None
    ts = action.get("action_ts")
    return Click(user=user_id, decision=action["action_id"], run_id=value.run, step=value.step,
                 nonce=value.nonce,
                 action_ts=ts if isinstance(ts, str) and _ACTION_TS.fullmatch(ts) else None)


@dataclass(frozen=True)
class RunInfo:
    """What the intake needs to know about a run before it passes a vote on."""

    playbook: Playbook | None  # None: the run is not one of the playbooks
    initiator: str | None
    state: str | None = None  # Prefect's state type, e.g. "PAUSED", "CANCELLED"


# A run in one of these takes no vote, whatever its gate record still says: a cancelled or crashed
# run never closed its gate, and a Cancelling one is on its way out.
FINAL_STATES = frozenset({"CANCELLED", "CANCELLING", "CRASHED", "COMPLETED", "FAILED"})


class RunDirectory(Protocol):
    """Reads runs and delivers votes (Prefect in service; tests may record)."""

    async def describe(self, run_id: UUID) -> RunInfo | None:
        """The run's playbook and initiator, or None when there is no such run."""
        ...

    async def submit(self, run_id: UUID, step: str, vote: StoredVote) -> SubmitOutcome:
        """Store the vote on the run and wake its pause."""
        ...


class PrefectRunDirectory:
    """RunDirectory over Prefect's API (PREFECT_API_URL)."""

    def __init__(self, flow_playbooks: Mapping[str, Playbook] | None = None) -> None:
        """Args:
            flow_playbooks: flow name -> playbook; default: the playbooks' own flow names.
        """
        self.flow_playbooks = dict(flow_playbooks or {name: p for p, name in FLOW_NAMES.items()})

    async def describe(self, run_id: UUID) -> RunInfo | None:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        async with get_client() as client:
            try:
                run = await client.read_flow_run(run_id)
                flow = await client.read_flow(run.flow_id)
            except ObjectNotFound:
                return None
        initiator = run.parameters.get("initiator")
        return RunInfo(self.flow_playbooks.get(flow.name), initiator if isinstance(initiator, str) else None,
                       run.state.type.value if run.state else None)

    async def submit(self, run_id: UUID, step: str, vote: StoredVote) -> SubmitOutcome:
        return await submit_vote(run_id, step, vote)


Refusal = Literal["not-approver", "self-approval", "no-such-run", "not-a-playbook", "closed"]


def all_approvers(policies: Mapping[Playbook, PlaybookPolicy]) -> frozenset[str]:
    """Everyone who may approve anything, as `policy.identity` ids: a click from anyone else is
    refused without asking Prefect."""
    return frozenset(identity(a) or "" for p in policies.values() for a in p.approvers)


def refusal(click: Click, info: RunInfo | None,
            policies: Mapping[Playbook, PlaybookPolicy]) -> Refusal | None:
    """Why the intake refuses this click for this run, or None to pass the vote on (pure).

    Approver and self-approval are the policy's own rules (the ones `tally` applies to UI votes).
    """
    if info is None:
        return "no-such-run"
    if info.playbook is None or info.playbook not in policies:
        return "not-a-playbook"
    if info.state in FINAL_STATES:
        return "closed"
    policy = policies[info.playbook]
    if not is_approver(click.user, policy):
        return "not-approver"
    if is_self_approval(click.user, policy, info.initiator):
        return "self-approval"
    return None
