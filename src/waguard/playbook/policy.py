"""The policy responders edit: who approves, how many must, how long to wait, and what then.

One YAML file per playbook in `runbooks/<playbook>.policy.yaml`, validated into these models with
`extra="forbid"` so a typo is an error at start, not a silently ignored key. Control flow stays in the
flows; this is only data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from waguard.errors import ConfigError

Playbook = Literal["leaked_secret", "template_abuse", "account_takeover"]
PLAYBOOKS: tuple[Playbook, ...] = ("leaked_secret", "template_abuse", "account_takeover")
Severity = Literal["SEV1", "SEV2", "SEV3"]
# How an approval step ended (the gate's Decision, the Slack "decided" line). closed: the run ended first;
# superseded: an alert update changed the plan while asking.
Decided = Literal["approved", "denied", "held", "proceeded", "superseded", "closed"]


class TimeoutAction(StrEnum):
    HOLD = "hold"        # contain nothing further; the incident stays open for a human
    PROCEED = "proceed"  # apply the containment as if approved (only for the worst severities)


class Escalation(BaseModel):
    model_config = {"extra": "forbid"}

    channel: str = Field(description="Slack channel id the approval request is re-posted to.")
    after_s: int = Field(ge=1, description="Seconds without a decision before escalating.")


class EvidencePolicy(BaseModel):
    model_config = {"extra": "forbid"}

    log_globs: list[str] = Field(default_factory=list, description="Log files or globs to collect.")
    keep_message_bodies: bool = Field(False, description="Keep WhatsApp message bodies in evidence.")
    retention_days: int = Field(365, ge=1, description="Days a bundle is kept before `evidence prune`.")


class PlaybookPolicy(BaseModel):
    """What a responder tunes for one playbook."""

    model_config = {"extra": "forbid"}

    playbook: Playbook
    approvers: list[str] = Field(min_length=1, description="Who may approve: Slack user ids or UI names.")
    quorum: int = Field(1, ge=1, description="How many distinct approvers must approve.")
    allow_self_approval: bool = Field(False, description="May the initiator approve their own run.")
    approval_timeout_s: int = Field(900, ge=1, description="Seconds to wait for a decision in all.")
    escalation: Escalation | None = Field(None, description="Where to escalate an unanswered approval.")
    on_timeout: dict[Severity, TimeoutAction] = Field(
        default_factory=lambda: dict[Severity, TimeoutAction]({"SEV1": TimeoutAction.PROCEED,
                                                               "SEV2": TimeoutAction.HOLD,
                                                               "SEV3": TimeoutAction.HOLD}),
        description="What happens when nobody decides in time, per severity.",
    )
    on_resolve: Literal["keep_asking", "hold"] = Field(
        "keep_asking", description="When the alert resolves at its source while approval is pending: keep "
        "asking (containment stays a human decision) or end the run as held.")
    named_admins: list[str] = Field(
        default_factory=list, description="Business users who stay (account takeover removes all others)."
    )
    evidence: EvidencePolicy = Field(default_factory=EvidencePolicy, description="Evidence collection.")

    @model_validator(mode="after")
    def _consistent(self) -> PlaybookPolicy:
        distinct = len({identity(a) for a in self.approvers})
        if self.quorum > distinct:
            raise ValueError(f"quorum {self.quorum} exceeds the {distinct} distinct approvers")
        if self.escalation and self.escalation.after_s >= self.approval_timeout_s:
            raise ValueError("escalation.after_s must be shorter than approval_timeout_s")
        missing = {"SEV1", "SEV2", "SEV3"} - set(self.on_timeout)
        if missing:
            raise ValueError(f"on_timeout lacks {sorted(missing)}")
        if self.playbook == "account_takeover" and not self.named_admins:
            raise ValueError("account_takeover needs named_admins: removing every user would lock us out")
        return self


def policy_path(runbooks_dir: Path, playbook: Playbook) -> Path:
    return runbooks_dir / f"{playbook.replace('_', '-')}.policy.yaml"


M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: Path, model: type[M], what: str) -> M:
    """Read a YAML file responders edit into `model`.

    Raises:
        ConfigError: naming the file and every invalid key.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {err}") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = [f"  {'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}" for e in err.errors()]
        raise ConfigError(f"{what} {path} is invalid:\n" + "\n".join(lines)) from None


def load_policy(runbooks_dir: Path, playbook: Playbook) -> PlaybookPolicy:
    """Read and validate one playbook's policy.

    Raises:
        ConfigError: naming the file and every invalid key.
    """
    path = policy_path(runbooks_dir, playbook)
    policy = load_yaml_model(path, PlaybookPolicy, "policy")
    if policy.playbook != playbook:
        raise ConfigError(f"policy {path} is for playbook {policy.playbook}, not {playbook}")
    return policy


# --- approval decisions (pure) -------------------------------------------------------------------


class Verdict(StrEnum):
    APPROVED = "approved"
    DENIED = "denied"
    PENDING = "pending"


@dataclass(frozen=True)
class Vote:
    """One person's decision on one approval step."""

    approver: str
    approve: bool
    channel: Literal["ui", "slack", "timeout"] = "ui"


@dataclass(frozen=True)
class Tally:
    verdict: Verdict
    counted: tuple[Vote, ...]
    refused: tuple[tuple[Vote, str], ...]  # each refused vote with the reason

    @property
    def approvers(self) -> list[str]:
        return [v.approver for v in self.counted if v.approve]


_CHANNEL_PREFIXES = ("slack", "ui")


def identity(who: str | None) -> str | None:
    """One person's id however a door writes it, for comparisons only.

    The only place identities are compared (tally, the intake's Slack check, the quorum's
    distinctness): `slack:U1`, `ui:U1`, ` U1 ` and `u1` are one person. Other prefixes are kept, so
    `intake:github` is never a person.
    """
    if who is None:
        return None
    channel, sep, rest = who.strip().partition(":")
    if sep and channel.lower() in _CHANNEL_PREFIXES:
        who = rest
    return who.strip().casefold() or None


def is_approver(who: str, policy: PlaybookPolicy) -> bool:
    return identity(who) in {identity(a) for a in policy.approvers}


def is_self_approval(who: str, policy: PlaybookPolicy, initiator: str | None) -> bool:
    """True when `who` started the run and the policy does not let initiators approve."""
    return not policy.allow_self_approval and initiator is not None and identity(who) == identity(initiator)


def refusal_reason(vote: Vote, policy: PlaybookPolicy, initiator: str | None) -> str | None:
    """Why a vote does not count, or None if it does."""
    if not is_approver(vote.approver, policy):
        return f"{vote.approver} is not an approver for {policy.playbook}"
    if is_self_approval(vote.approver, policy, initiator):
        return f"{vote.approver} started this run and cannot approve it"
    return None


def tally(votes: Iterable[Vote], policy: PlaybookPolicy, initiator: str | None) -> Tally:
    """Decide a step from the votes so far.

    A valid deny decides at once (any approver can stop a destructive act); approvals need `quorum`
    distinct approvers. A person's second vote changes nothing: the first one counts.
    """
    counted: list[Vote] = []
    refused: list[tuple[Vote, str]] = []
    seen: set[str] = set()
    for vote in votes:
        reason = refusal_reason(vote, policy, initiator)
        who = identity(vote.approver) or ""
        if reason is None and who in seen:
            reason = f"{vote.approver} already decided"
        if reason is not None:
            refused.append((vote, reason))
            continue
        seen.add(who)
        counted.append(vote)
        if not vote.approve:
            return Tally(Verdict.DENIED, tuple(counted), tuple(refused))
    verdict = Verdict.APPROVED if sum(v.approve for v in counted) >= policy.quorum else Verdict.PENDING
    return Tally(verdict, tuple(counted), tuple(refused))
