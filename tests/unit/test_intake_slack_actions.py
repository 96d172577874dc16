"""Parsing Slack clicks strictly, and the pure refusal rules (approvers, self-approval, unknown runs)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import pytest

from tests.fixtures.intake import click_body
from waguard.intake.slack_actions import BadClick, Click, RunInfo, all_approvers, parse_click, refusal
from waguard.playbook.policy import PLAYBOOKS, PlaybookPolicy, Vote, identity, load_policy, refusal_reason

RUN = uuid.UUID("0b7b6a6e-2b1c-4d8e-9f00-1234567890ab")
RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
POLICIES = {p: load_policy(RUNBOOKS, p) for p in PLAYBOOKS}


def test_parse_a_click() -> None:
    c = parse_click(click_body("U0ONCALL", RUN, "approve-rotation", "n0nce-abcdefgh", "deny"))
    assert c == Click("U0ONCALL", "deny", RUN, "approve-rotation", "n0nce-abcdefgh", "1764000000.000100")


def payload(**over) -> bytes:
    base = json.loads(parse_qs(click_body("U0ONCALL", RUN, "s1", "n0nce-abcdefgh").decode())["payload"][0])
    base.update(over)
    return urlencode({"payload": json.dumps(base)}).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"payload=",
        b"payload=%5B%5D",
        b"a=1&b=2",
        b"payload=1&payload=2",
        b"\xff",
        payload(type="view_submission"),
        payload(user={"id": "u0lower"}),
        payload(user={"id": "U0" + "X" * 40}),
        payload(user="U0ONCALL"),
        payload(actions=[]),
        payload(actions=[{"action_id": "approve"}, {"action_id": "deny"}]),
        payload(actions=[{"action_id": "approve", "value": "{}"}]),
        payload(
            actions=[
                {"action_id": "approve", "value": json.dumps({"run": "x", "step": "s", "nonce": "n0nce-abc"})}
            ]
        ),
        payload(
            actions=[
                {
                    "action_id": "escalate",
                    "value": json.dumps({"run": str(RUN), "step": "s", "nonce": "n0nce-abcdefgh"}),
                }
            ]
        ),
    ],
)
def test_malformed_clicks(body: bytes) -> None:
    with pytest.raises(BadClick):
        parse_click(body)


def click(user: str) -> Click:
    return Click(user, "approve", RUN, "s1", "n0nce-abcdefgh", None)


@pytest.mark.parametrize(
    ("user", "info", "expected"),
    [
        ("U0ONCALL", RunInfo("leaked_secret", "intake:github"), None),
        ("U0ONCALL", RunInfo("leaked_secret", None), None),
        ("U0EVIL", RunInfo("leaked_secret", "intake:github"), "not-approver"),
        ("U0ONCALL", RunInfo("leaked_secret", "U0ONCALL"), "self-approval"),
        ("U0ONCALL", RunInfo("leaked_secret", "slack:U0ONCALL"), "self-approval"),
        ("U0ONCALL", None, "no-such-run"),
        ("U0ONCALL", RunInfo(None, "x"), "not-a-playbook"),
    ],
)
def test_refusal(user, info, expected) -> None:
    assert refusal(click(user), info, POLICIES) == expected


def test_self_approval_when_the_policy_allows_it() -> None:
    lenient = {
        **POLICIES,
        "leaked_secret": PlaybookPolicy(
            playbook="leaked_secret", approvers=["U0ONCALL"], allow_self_approval=True
        ),
    }
    assert refusal(click("U0ONCALL"), RunInfo("leaked_secret", "U0ONCALL"), lenient) is None


def test_all_approvers() -> None:
    assert {identity(u) for u in ("U0ONCALL", "U0SECLEAD", "slack:U0CISO")} <= all_approvers(POLICIES)
    assert identity("U0EVIL") not in all_approvers(POLICIES)


@pytest.mark.parametrize(
    ("initiator", "user", "expected"),
    [
        ("slack:U0ONCALL", "U0ONCALL", "self-approval"),
        ("U0ONCALL", "U0ONCALL", "self-approval"),
        (" ui:u0oncall ", "U0ONCALL", "self-approval"),
        ("intake:github", "U0ONCALL", None),
        ("slack:U0SECLEAD", "U0ONCALL", None),
    ],
)
def test_self_approval_is_the_policys_rule(initiator, user, expected) -> None:
    """The Slack door applies exactly what tally() applies to a UI vote."""
    info = RunInfo("leaked_secret", initiator)
    assert refusal(click(user), info, POLICIES) == expected
    vote_refused = refusal_reason(Vote(user, True, "ui"), POLICIES["leaked_secret"], initiator)
    assert (vote_refused is not None) == (expected is not None)


@pytest.mark.parametrize("state", ["CANCELLED", "CANCELLING", "CRASHED", "COMPLETED", "FAILED"])
def test_a_run_that_has_ended_takes_no_vote(state: str) -> None:
    assert refusal(click("U0SECLEAD"), RunInfo("leaked_secret", "intake:github", state), POLICIES) == "closed"
    assert refusal(click("U0SECLEAD"), RunInfo("leaked_secret", "intake:github", "PAUSED"), POLICIES) is None
