"""Slack clicks through the intake app: every refusal is answered, recorded and counted, and only a
verified click from an allowed approver reaches the run (a recording run directory here; the real
Prefect round trip is in test_intake_prefect.py)."""

from __future__ import annotations

import uuid

import pytest

import tests.fixtures.intake as fx
from tests.fixtures.intake import (
    T0,
    Harness,
    click_body,
    slack_headers,
)
from waguard.intake.audit import read_audit
from waguard.intake.slack_actions import RunInfo

# The intake room's fixtures (tests/fixtures/intake.py), bound here so pytest finds them.
intake = fx.intake
intake_env = fx.intake_env

pytestmark = pytest.mark.slow
STEP, NONCE = "approve-rotation", "n0nce-abcdefgh"


def setup_run(
    h: Harness, initiator: str | None = "intake:github", playbook: str | None = "leaked_secret"
) -> uuid.UUID:
    run = uuid.uuid4()
    h.runs.runs[run] = RunInfo(playbook, initiator)  # type: ignore[arg-type]
    return run


async def click(
    h: Harness,
    user: str,
    run: uuid.UUID,
    *,
    action: str = "approve",
    nonce: str = NONCE,
    ts: float | None = None,
    secret: str | None = None,
    action_ts: str = "1764000000.000100",
    body: bytes | None = None,
):
    body = body if body is not None else click_body(user, run, STEP, nonce, action, action_ts)
    headers = slack_headers(secret or h.env.secrets.slack_signing_secret, body, int(ts or h.clock.now))
    return await h.client.post("/slack/interactions", content=body, headers=headers), body, headers


async def test_an_approvers_click_reaches_the_run(intake: Harness) -> None:
    run = setup_run(intake)
    r, _, _ = await click(intake, "U0SECLEAD", run)
    assert r.status_code == 200 and r.json()["outcome"] == "vote-accepted"
    [(run_id, step, vote)] = intake.runs.votes
    assert (run_id, step, vote.approver, vote.decision, vote.nonce) == (
        run,
        STEP,
        "U0SECLEAD",
        "approve",
        NONCE,
    )
    r, _, _ = await click(intake, "U0CISO", run, action="deny", action_ts="1764000001.000200")
    assert r.status_code == 200 and intake.runs.votes[-1][2].decision == "deny"
    record = read_audit(intake.env.settings.intake.state_dir / "audit.jsonl")[-1]
    assert record["source"] == "slack" and record["actor"] == "U0CISO" and record["run_id"] == str(run)


async def test_forged_stale_and_replayed_requests_are_refused(intake: Harness) -> None:
    run = setup_run(intake)
    r, _, _ = await click(intake, "U0SECLEAD", run, secret="forged-secret")
    assert r.status_code == 401
    r, _, _ = await click(intake, "U0SECLEAD", run, ts=T0 - 301)
    assert r.status_code == 401
    r, body, headers = await click(intake, "U0SECLEAD", run)
    assert r.status_code == 200
    again = await intake.client.post("/slack/interactions", content=body, headers=headers)
    assert again.status_code == 409 and again.json()["error"] == "repeated_request"
    tampered = body.replace(b"approve", b"deny")
    r = await intake.client.post("/slack/interactions", content=tampered, headers=headers)
    assert r.status_code == 401
    assert len(intake.runs.votes) == 1
    metrics = (await intake.client.get("/metrics")).text
    assert 'waguard_intake_signature_failures_total{reason="mismatch",source="slack"} 2.0' in metrics
    assert 'waguard_intake_signature_failures_total{reason="stale",source="slack"} 1.0' in metrics


async def test_a_stranger_is_refused_before_prefect_is_asked(intake: Harness) -> None:
    run = setup_run(intake)
    r, _, _ = await click(intake, "U0EVIL", run)
    assert r.status_code == 403 and r.json()["error"] == "not_an_approver"
    assert intake.runs.described == 0 and intake.runs.votes == []


@pytest.mark.parametrize(
    ("initiator", "playbook", "user", "status", "error"),
    [
        ("U0SECLEAD", "leaked_secret", "U0SECLEAD", 403, "self_approval"),
        ("slack:U0SECLEAD", "leaked_secret", "U0SECLEAD", 403, "self_approval"),
        (None, None, "U0SECLEAD", 404, "not_a_playbook"),
    ],
)
async def test_run_specific_refusals(intake: Harness, initiator, playbook, user, status, error) -> None:
    run = setup_run(intake, initiator, playbook)
    r, _, _ = await click(intake, user, run)
    assert (r.status_code, r.json()["error"]) == (status, error)
    assert intake.runs.votes == []


async def test_no_such_run(intake: Harness) -> None:
    r, _, _ = await click(intake, "U0SECLEAD", uuid.uuid4())
    assert (r.status_code, r.json()["error"]) == (404, "no_such_run")


async def test_a_second_click_by_the_same_person_is_refused(intake: Harness) -> None:
    run = setup_run(intake)
    assert (await click(intake, "U0ONCALL", run))[0].status_code == 200
    r, _, _ = await click(intake, "U0ONCALL", run, action="deny", action_ts="1764000002.000300")
    assert (r.status_code, r.json()["error"]) == (409, "already_voted")
    assert len(intake.runs.votes) == 1


@pytest.mark.parametrize(("outcome", "status"), [("stale", 409), ("closed", 409), ("no-such-step", 200)])
async def test_the_runs_own_answer(intake: Harness, outcome, status) -> None:
    intake.runs.outcome = outcome
    r, _, _ = await click(intake, "U0ONCALL", setup_run(intake))
    assert r.status_code == status


@pytest.mark.parametrize(
    "body",
    [
        b"payload=not-json",
        b"nothing=here",
        b"payload=%7B%22type%22%3A%22view_submission%22%7D",
        b"\xff\xfe",
        click_body("U0ONCALL", uuid.uuid4(), STEP, "short", "approve"),  # nonce too short
        click_body("U0ONCALL", uuid.uuid4(), STEP, NONCE, "delete_everything"),
    ],
)
async def test_malformed_payloads(intake: Harness, body: bytes) -> None:
    r, _, _ = await click(intake, "U0ONCALL", uuid.uuid4(), body=body)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_payload")


async def test_wrong_content_type(intake: Harness) -> None:
    body = click_body("U0ONCALL", uuid.uuid4(), STEP, NONCE)
    r = await intake.client.post(
        "/slack/interactions", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 415
