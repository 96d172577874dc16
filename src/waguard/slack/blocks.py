"""Block Kit messages for incident threads and approvals, pure: data in, JSON-ready dicts out.

Three messages:
- the incident status message (`incident_blocks`), posted once per incident and updated in place;
- the approval request (`approval_blocks`), a reply in the incident thread with Approve / Deny
  buttons whose `value` names the Prefect flow run, the step and the gate's nonce;
- the decided approval (`decided_blocks`), the same request with the buttons replaced by who decided.

Every builder has a `*_text` twin: the top-level `text` Slack shows in notifications and screen
readers when blocks cannot be shown.

Secrets: these builders get ids, names, links and summaries, never a secret value, and they cannot
check that. Callers must pass Vault paths and object ids only (DESIGN.md, "Rules that hold everywhere").

Escaping: text that comes from outside (alert titles, template names, user-supplied details) is
escaped for mrkdwn here, so an attacker-chosen title cannot ping `<!channel>` or fake a link. An
approval `summary` is mrkdwn written by the flow; the flow escapes anything it interpolates into it
with `escape_mrkdwn`.
"""

from __future__ import annotations

import json
import re
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from waguard.playbook.policy import Decided, Severity
from waguard.playbook.timeline import Outcome
from waguard.slack import limits

Block = dict[str, Any]

ELLIPSIS = "…"
APPROVE, DENY = "approve", "deny"
APPROVAL_BLOCK_PREFIX = "approval-v1"
DECIDED_BLOCK_PREFIX = "decided-v1"
FALLBACK_TEXT = 3000  # our own cap: the fallback is a notification line, not a document

STEP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"
NONCE_PATTERN = r"^[A-Za-z0-9_-]{8,128}$"
_STEP, _NONCE = re.compile(STEP_PATTERN), re.compile(NONCE_PATTERN)
_URL = r"^https?://[^\s|<>]+$"  # no space, '|' or '>': they would break a mrkdwn <url|label> link
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,20}$")
_BUTTON_FIELDS = frozenset({"run", "step", "nonce"})

SEVERITY_EMOJI: dict[str, str] = {
    "SEV1": ":red_circle:", "SEV2": ":large_orange_circle:", "SEV3": ":large_yellow_circle:",
}
STATE_EMOJI: dict[str, str] = {
    "open": ":rotating_light:", "running": ":gear:", "awaiting approval": ":hourglass_flowing_sand:",
    "contained": ":shield:", "resolved": ":white_check_mark:", "failed": ":x:", "held": ":pause_button:",
    "denied": ":no_entry:", "approved": ":white_check_mark:", "proceeded": ":fast_forward:",
    "planned": ":memo:",
}
OUTCOME_EMOJI: dict[str, str] = {
    "started": ":hourglass_flowing_sand:", "done": ":white_check_mark:", "skipped": ":heavy_minus_sign:",
    "already": ":ballot_box_with_check:", "planned": ":memo:", "failed": ":x:", "decided": ":scales:",
    "info": ":information_source:", "ended": ":checkered_flag:",
}
DECIDED_LINE: dict[str, str] = {
    "approved": ":white_check_mark: *Approved* by {by}",
    "denied": ":no_entry: *Denied* by {by}",
    "held": ":pause_button: *No decision in time: held* ({by})",
    "proceeded": ":fast_forward: *No decision in time: proceeded* ({by})",
    "superseded": ":arrows_counterclockwise: *Superseded*: the targets changed, see the new request ({by})",
    "closed": ":x: *Closed without a decision* ({by})",
}


class StepLine(BaseModel):
    """One line of the incident's step list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str = Field(min_length=1)
    outcome: Outcome
    detail: str = Field("", description="Plain text; escaped, and cut to fit, when rendered.")


class IncidentView(BaseModel):
    """What the incident status message shows. Ids, names and links only: never a secret.

    Free-text fields have no length limit here (an alert's title must not fail a playbook run):
    rendering cuts them to Block Kit's limits.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    incident_id: str = Field(min_length=1, max_length=128)
    playbook: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, description="Plain text, e.g. the alert's title.")
    severity: Severity
    state: str = Field(min_length=1, description='e.g. "contained", "awaiting approval".')
    current_step: str | None = None
    steps: tuple[StepLine, ...] = ()
    prefect_run_url: str = Field(pattern=_URL)
    evidence_url: str | None = Field(None, pattern=_URL)
    evidence_digest: str | None = Field(None, pattern=r"^(sha256:)?[0-9a-f]{64}$")


class ApprovalRequest(BaseModel):
    """One approval step waiting for a human (waguard.playbook.approval.ApprovalGate's request)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID = Field(description="The Prefect flow-run id the decision resumes.")
    step: str = Field(pattern=STEP_PATTERN, description="The runbook step, e.g. 'deregister-numbers'.")
    nonce: str = Field(pattern=NONCE_PATTERN, description="The gate's nonce; a click with another is stale.")
    summary: str = Field(min_length=1, description="mrkdwn written by the flow: what approving will do.")
    destructive: tuple[str, ...] = Field((), description="Plain-text lines, one per destructive action.")


class ButtonValue(BaseModel):
    """What an approval button carries back to the intake: which run, which step, which gate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: UUID
    step: str = Field(pattern=STEP_PATTERN)
    nonce: str = Field(pattern=NONCE_PATTERN)

    def encode(self) -> str:
        """Compact JSON, the button's `value`.

        Raises:
            ValueError: the encoding exceeds Slack's 2000-character limit (cannot happen with
                validated fields; checked anyway because Slack would refuse the whole message).
        """
        text = json.dumps({"run": str(self.run), "step": self.step, "nonce": self.nonce},
                          separators=(",", ":"))
        if len(text) > limits.BUTTON_VALUE:
            raise ValueError(f"button value is {len(text)} characters; Slack allows {limits.BUTTON_VALUE}")
        return text


# ---- text helpers ---------------------------------------------------------------------------------

def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup (&, <, >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in an ellipsis when cut.

    A cut never leaves half an escape (`&am`) or half a `<link|label>` behind.
    """
    if len(text) <= limit:
        return text
    cut = text[: max(limit - len(ELLIPSIS), 0)]
    entity = re.search(r"&[a-z]{0,3}$", cut)
    if entity:
        cut = cut[: entity.start()]
    opened, closed = cut.rfind("<"), cut.rfind(">")
    if opened > closed:
        cut = cut[:opened]
    return cut + ELLIPSIS


def _code(text: str) -> str:
    # An inline code span cannot hold a backtick; a look-alike keeps ids readable.
    return "`" + escape_mrkdwn(text).replace("`", "ˋ") + "`"


def _mrkdwn(text: str, limit: int = limits.SECTION_TEXT) -> Block:
    return {"type": "mrkdwn", "text": truncate(text, limit)}


def _plain(text: str, limit: int) -> Block:
    return {"type": "plain_text", "text": truncate(text, limit), "emoji": True}


def _who(by: str) -> str:
    if not by:
        return "_unknown_"  # approval.Decision.by defaults to ""
    return f"<@{by}>" if _SLACK_USER.fullmatch(by) else _code(by)


# ---- incident status message ----------------------------------------------------------------------

def incident_blocks(view: IncidentView) -> list[Block]:
    """The incident status message: header, facts, the step list, links."""
    sev = SEVERITY_EMOJI.get(view.severity, ":white_circle:")
    state = STATE_EMOJI.get(view.state, ":large_blue_circle:")
    facts = [
        f"*Incident*\n{_code(view.incident_id)}",
        f"*Playbook*\n{_code(view.playbook)}",
        f"*Severity*\n{sev} {view.severity}",
        f"*State*\n{state} {escape_mrkdwn(truncate(view.state, 100))}",
        f"*Current step*\n{_code(truncate(view.current_step, 100)) if view.current_step else '—'}",
    ]
    links = [f"<{view.prefect_run_url}|Prefect flow run>"]
    if view.evidence_url:
        links.append(f"<{view.evidence_url}|Evidence bundle>")
    if view.evidence_digest:
        digest = view.evidence_digest.removeprefix("sha256:")
        links.append(f"sha256 `{digest}`")
    return [
        {"type": "header", "text": _plain(f"{view.severity} · {view.title}", limits.HEADER_TEXT)},
        {"type": "section", "fields": [_mrkdwn(f, limits.FIELD_TEXT) for f in facts]},
        {"type": "section", "text": _mrkdwn(_step_list(view.steps))},
        {"type": "context", "elements": [_mrkdwn(" · ".join(links), limits.CONTEXT_TEXT)]},
    ]


def _step_list(steps: tuple[StepLine, ...]) -> str:
    if not steps:
        return "*Steps*\n_No steps yet._"
    lines = []
    for s in steps:
        detail = f" {escape_mrkdwn(s.detail)}" if s.detail else ""
        emoji = OUTCOME_EMOJI.get(s.outcome, ":grey_question:")
        lines.append(truncate(f"{emoji} {_code(truncate(s.step, 100))}{detail}", 300))
    # Keep the latest steps when the list outgrows a section: responders look at the end.
    head = "*Steps*"
    dropped = 0
    while len(head) + 1 + len("\n".join(lines)) + 40 > limits.SECTION_TEXT and len(lines) > 1:
        lines.pop(0)
        dropped += 1
    if dropped:
        head += f"\n{ELLIPSIS} {dropped} earlier step{'s' if dropped > 1 else ''}"
    return head + "\n" + "\n".join(lines)


def incident_text(view: IncidentView) -> str:
    """Notification fallback for the incident message."""
    return truncate(escape_mrkdwn(f"[{view.severity}] {view.title}: {view.state} "
                                  f"(incident {view.incident_id}, playbook {view.playbook})"), FALLBACK_TEXT)


# ---- approval request and decision ----------------------------------------------------------------

def button_value(request: ApprovalRequest) -> str:
    """The `value` both approval buttons carry: compact JSON {"run", "step", "nonce"}."""
    return ButtonValue(run=request.run_id, step=request.step, nonce=request.nonce).encode()


def _request_sections(request: ApprovalRequest) -> list[Block]:
    out: list[Block] = [{"type": "section", "text": _mrkdwn(
        f":raising_hand: *Approval needed* for step {_code(request.step)}\n{request.summary}")}]
    if request.destructive:
        bullets = "\n".join(f"• {escape_mrkdwn(a)}" for a in request.destructive)
        out.append({"type": "section", "text": _mrkdwn(f"*Approving will:*\n{bullets}")})
    out.append({"type": "context", "elements": [
        _mrkdwn(f"Prefect flow run {_code(str(request.run_id))} · gate {_code(request.nonce)}",
                limits.CONTEXT_TEXT),
    ]})
    return out


def approval_block_id(request: ApprovalRequest) -> str:
    """block_id of the buttons: unique per gate, so every new request is a new message iteration."""
    block_id = f"{APPROVAL_BLOCK_PREFIX}:{request.step}:{request.nonce}"
    return block_id[: limits.BLOCK_ID]


def approval_blocks(request: ApprovalRequest) -> list[Block]:
    """The approval request: what will happen, then Approve / Deny (Deny asks for confirmation)."""
    value = button_value(request)
    approve = {
        "type": "button", "action_id": APPROVE, "style": "primary", "value": value,
        "text": _plain("Approve", limits.BUTTON_TEXT),
    }
    deny = {
        "type": "button", "action_id": DENY, "style": "danger", "value": value,
        "text": _plain("Deny", limits.BUTTON_TEXT),
        "confirm": {
            "title": _plain("Deny this step?", limits.CONFIRM_TITLE),
            "text": _plain(f"The playbook will not run step {request.step}; the incident stays open "
                           "for a human.", limits.CONFIRM_TEXT),
            "confirm": _plain("Deny", limits.CONFIRM_BUTTON),
            "deny": _plain("Cancel", limits.CONFIRM_BUTTON),
            "style": "danger",
        },
    }
    return [*_request_sections(request),
            {"type": "actions", "block_id": approval_block_id(request), "elements": [approve, deny]}]


def approval_text(request: ApprovalRequest) -> str:
    """Notification fallback for the approval request."""
    return f"Approval needed for step {request.step} (Prefect flow run {request.run_id})"


def decided_blocks(request: ApprovalRequest, decision: Decided, by_user: str) -> list[Block]:
    """The approval request with its buttons replaced by the outcome and who decided it.

    Args:
        request: the request the message showed.
        decision: how the step ended (waguard.playbook.approval.Decision.outcome).
        by_user: a Slack user id (rendered as a mention) or another actor, e.g. "timeout-policy:SEV1".
    """
    if decision not in DECIDED_LINE:
        raise ValueError(f"unknown decision {decision!r}; expected one of {sorted(DECIDED_LINE)}")
    line = DECIDED_LINE[decision].format(by=_who(by_user))
    block_id = f"{DECIDED_BLOCK_PREFIX}:{request.step}:{request.nonce}"[: limits.BLOCK_ID]
    return [*_request_sections(request), {"type": "section", "block_id": block_id, "text": _mrkdwn(line)}]


def decided_text(request: ApprovalRequest, decision: Decided, by_user: str) -> str:
    """Notification fallback for the decided approval."""
    by = by_user if _SLACK_USER.fullmatch(by_user) else escape_mrkdwn(by_user or "unknown")
    return f"Step {request.step}: {decision} by {by}"


# ---- parsing a click ------------------------------------------------------------------------------

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("button value repeats a field")
    return dict(pairs)


def parse_button_value(value: object) -> ButtonValue:
    """Parse an approval button's `value` from a click, strictly.

    The value comes from an HTTP request: even once the signature proves Slack sent it, treat it as
    input. Messages name the problem, never echo the value.

    Raises:
        ValueError: not a string, over 2000 characters, not a JSON object, a field missing, extra
            or repeated, a field not a string, run not a canonical UUID, step or nonce malformed.
    """
    if not isinstance(value, str):
        raise ValueError("button value must be a string")
    if len(value) > limits.BUTTON_VALUE:
        raise ValueError(f"button value is longer than {limits.BUTTON_VALUE} characters")
    try:
        data = json.loads(value, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError:
        raise ValueError("button value is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("button value must be a JSON object")
    missing, extra = _BUTTON_FIELDS - data.keys(), data.keys() - _BUTTON_FIELDS
    if missing:
        raise ValueError(f"button value lacks field(s): {', '.join(sorted(missing))}")
    if extra:
        raise ValueError(f"button value has unexpected field(s): {', '.join(sorted(extra))[:100]}")
    for key in sorted(_BUTTON_FIELDS):
        if not isinstance(data[key], str):
            raise ValueError(f"button value field {key!r} must be a string")
    try:
        run = UUID(data["run"])
    except ValueError:
        raise ValueError("button value field 'run' is not a UUID") from None
    if str(run) != data["run"]:
        raise ValueError("button value field 'run' is not a canonical lower-case UUID")
    if not _STEP.fullmatch(data["step"]):
        raise ValueError("button value field 'step' is not a valid step name")
    if not _NONCE.fullmatch(data["nonce"]):
        raise ValueError("button value field 'nonce' is not a valid nonce")
    return ButtonValue(run=run, step=data["step"], nonce=data["nonce"])
