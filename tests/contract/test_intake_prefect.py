"""The intake against a real Prefect server: the Prefect starter (one run per incident, in our layer
and in Prefect's idempotency key), and Slack approval clicks deciding a paused run end to end."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from pathlib import Path
from uuid import UUID

import httpx
import pytest
import yaml
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run
from prefect.states import Cancelled

import tests.fixtures.intake as fx
from tests.fixtures.intake import (
    RUNBOOKS,
    FakeClock,
    IntakeEnv,
    click_body,
    dumps,
    github_alert,
    github_headers,
    slack_headers,
)
from waguard.intake.app import create_app
from waguard.intake.audit import read_audit
from waguard.intake.slack_actions import PrefectRunDirectory
from waguard.intake.starter import PrefectRunStarter
from waguard.playbook.approval import ApprovalGate, gate_key
from waguard.playbook.policy import load_policy
from waguard.playbook.timeline import IncidentRecord

# The intake room's fixtures (tests/fixtures/intake.py), bound here so pytest finds them.
intake_env = fx.intake_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]
SESSION = uuid.uuid4().hex[:8]  # a reused server keeps idempotency keys forever: new flow names per session
STARTED_FLOW = f"waguard-intake-test-{SESSION}"
GATE_FLOW = f"waguard-intake-gate-{SESSION}"


@pytest.fixture
async def deployment() -> str:
    """A deployment of a test flow that nothing executes: runs are created and stay Scheduled."""
    async with get_client() as client:
        flow_id = await client.create_flow_from_name(STARTED_FLOW)
        await client.create_deployment(flow_id=flow_id, name="leaked-secret")
    return f"{STARTED_FLOW}/leaked-secret"


async def runs_of(flow_name: str, *states: StateType) -> list:
    state_filter = (
        FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states))))
        if states
        else None
    )
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), flow_run_filter=state_filter
        )


async def test_prefect_starter_is_idempotent_per_key(deployment: str) -> None:
    starter = PrefectRunStarter(deployments={"leaked_secret": deployment})
    key = f"github:1:{uuid.uuid4().hex}:leaked_secret:1"
    params = {"incident_id": key, "severity": "SEV1"}
    first = await starter.start("leaked_secret", params, key)
    again = await starter.start("leaked_secret", {**params, "severity": "SEV3"}, key)
    other = await starter.start("leaked_secret", params, key + "x")
    assert first == again != other
    async with get_client() as client:
        run = await client.read_flow_run(UUID(first))
    assert run.parameters == params and run.idempotency_key == key and run.name == key
    assert {"waguard", "intake"} <= set(run.tags)


async def test_prefect_starter_follows_a_deployment_recreated_under_its_name(deployment: str) -> None:
    starter = PrefectRunStarter(deployments={"leaked_secret": deployment})
    key = f"github:2:{uuid.uuid4().hex}:leaked_secret:1"
    first = await starter.start("leaked_secret", {"incident_id": key}, key)  # the id is kept from here
    async with get_client() as client:
        old = await client.read_deployment_by_name(deployment)
        assert (await client.read_flow_run(UUID(first))).deployment_id == old.id
        await client.delete_deployment(old.id)  # its runs go with it
        new_id = await client.create_deployment(flow_id=old.flow_id, name=old.name)
    second = await starter.start("leaked_secret", {"incident_id": key + "b"}, key + "b")
    async with get_client() as client:
        assert (await client.read_flow_run(UUID(second))).deployment_id == new_id != old.id


async def test_a_storm_of_deliveries_makes_one_prefect_run(
    intake_env: IntakeEnv, deployment: str, tmp_path: Path
) -> None:
    env = intake_env
    repo = int(uuid.uuid4().int % 10**9)
    starter = PrefectRunStarter(deployments={"leaked_secret": deployment})

    async def storm(app, n: int, tag: str) -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as client:

            async def one(i: int) -> dict:
                # Distinct events about one alert (each changes updated_at): a replayed body would
                # be absorbed as a duplicate instead of joining.
                hour = {"a": 10, "b": 11, "c": 12}[tag]
                body = dumps(
                    github_alert(
                        "created" if i % 2 else "publicly_leaked",
                        repo_id=repo,
                        secret=env.secrets.meta_token,
                        updated_at=f"2026-11-24T{hour}:00:{i:02d}Z",
                    )
                )
                r = await client.post(
                    "/alerts/github",
                    content=body,
                    headers=github_headers(env.secrets.github_secret, body, f"{tag}-{repo}-{i}"),
                )
                return r.json()

            answers = await asyncio.gather(*(one(i) for i in range(n)))
        await app.state.intake.dispatcher.settle()
        return answers

    app = create_app(env.settings, env.vault, starter, FakeClock())
    answers = await storm(app, 30, "a")
    assert sorted(a["outcome"] for a in answers).count("started") == 1
    await app.state.intake.aclose()
    [run] = [
        r for r in await runs_of(STARTED_FLOW) if f"github:{repo}:" in r.parameters.get("incident_id", "")
    ]
    assert run.parameters["leaked"] == "token" and run.parameters["initiator"] == "intake:github"
    records = read_audit(env.settings.intake.state_dir / "audit.jsonl")
    assert [r["run_id"] for r in records if r["outcome"] == "run-started"] == [str(run.id)]

    # A restart keeps the incident map: more deliveries join, nothing new starts.
    app = create_app(env.settings, env.vault, starter, FakeClock())
    assert {a["outcome"] for a in await storm(app, 5, "b")} == {"joined"}
    await app.state.intake.aclose()
    # Even with its state lost, the intake cannot make a second run: Prefect's idempotency key holds.
    lost = env.settings.model_copy(
        update={"intake": env.settings.intake.model_copy(update={"state_dir": tmp_path / "lost-state"})}
    )
    app = create_app(lost, env.vault, starter, FakeClock())
    await storm(app, 3, "c")
    await app.state.intake.aclose()
    assert [
        r.id for r in await runs_of(STARTED_FLOW) if f"github:{repo}:" in r.parameters.get("incident_id", "")
    ] == [run.id]


async def test_a_replayed_github_alert_does_not_reopen_a_cancelled_incident(
    intake_env: IntakeEnv, deployment: str
) -> None:
    """Issue 10.5: the same signed body under a fresh X-GitHub-Delivery (not signed) used to start
    generation 2 once the first run was cancelled. Only a genuinely new event may."""
    env = intake_env
    repo = int(uuid.uuid4().int % 10**9)
    clock = FakeClock()
    starter = PrefectRunStarter(deployments={"leaked_secret": deployment})
    app = create_app(env.settings, env.vault, starter, clock)

    async def post(payload: dict, delivery: str) -> str:
        body = dumps(payload)
        headers = github_headers(env.secrets.github_secret, body, delivery)
        r = await client.post("/alerts/github", content=body, headers=headers)
        await app.state.intake.dispatcher.settle()
        return r.json()["outcome"]

    async def runs_for_repo() -> list:
        runs = await runs_of(STARTED_FLOW)
        return [r for r in runs if f"github:{repo}:" in r.parameters.get("incident_id", "")]

    alert = github_alert("created", repo_id=repo, updated_at="2026-11-24T10:00:00Z")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as client:
        assert await post(alert, f"d1-{repo}") == "started"
        [first] = await runs_for_repo()
        async with get_client() as prefect:
            await prefect.set_flow_run_state(first.id, Cancelled(), force=True)
        clock.advance(2)
        assert await post(alert, f"d2-{repo}") == "duplicate"
        assert [r.id for r in await runs_for_repo()] == [first.id]
        reopened = github_alert("reopened", repo_id=repo, updated_at="2026-11-24T12:00:00Z")
        assert await post(reopened, f"d3-{repo}") == "started"
        assert len(await runs_for_repo()) == 2
    await app.state.intake.aclose()


# --- Slack approval clicks against a paused run ----------------------------------------------------

STEP = "approve-containment"


@flow(name=GATE_FLOW)
async def gated_playbook(incident_id: str, initiator: str, runbooks: str, record_dir: str) -> dict:
    policy = load_policy(Path(runbooks), "account_takeover")
    gate = ApprovalGate(
        UUID(flow_run.id),
        STEP,
        policy,
        "SEV2",
        initiator,
        IncidentRecord(Path(record_dir), incident_id),
        poll_interval_s=1,
        timeout_s=90,
    )
    d = await gate.decide("Suspend the numbers and remove unknown users?")
    return {"outcome": d.outcome, "approvers": sorted(d.approvers)}


async def paused(run_id: UUID, *, not_key: str | None = None) -> str:
    """Wait until the run is paused (on a pause other than `not_key`); the pause's key."""
    async with get_client() as client:
        for _ in range(600):
            run = await client.read_flow_run(run_id)
            if run.state and run.state.is_paused() and run.state.state_details.pause_key != not_key:
                return str(run.state.state_details.pause_key)
            await asyncio.sleep(0.1)
    raise AssertionError("the run never paused")


async def test_slack_clicks_decide_a_paused_run(intake_env: IntakeEnv, tmp_path: Path) -> None:
    env = intake_env
    runbooks = tmp_path / "runbooks"
    shutil.copytree(RUNBOOKS, runbooks)
    policy_file = runbooks / "account-takeover.policy.yaml"
    policy = yaml.safe_load(policy_file.read_text())
    policy["approvers"] = ["U0ONCALL", "U0SECLEAD", "U0CISO", "U0IRLEAD"]  # quorum stays 2
    policy_file.write_text(yaml.safe_dump(policy))
    settings = env.settings.model_copy(update={"runbooks_dir": runbooks})
    clock = FakeClock(time.time())
    app = create_app(
        settings,
        env.vault,
        PrefectRunStarter(),
        clock,
        runs=PrefectRunDirectory({GATE_FLOW: "account_takeover"}),
    )

    task = asyncio.create_task(
        gated_playbook(f"INC-{uuid.uuid4().hex[:8]}", "U0ONCALL", str(runbooks), str(tmp_path / "incidents"))
    )
    for _ in range(600):
        mine = [r for r in await runs_of(GATE_FLOW, StateType.PAUSED)]
        if mine:
            break
        await asyncio.sleep(0.1)
    [run] = mine
    first_pause = await paused(run.id)
    async with get_client() as client:
        nonce = json.loads(await client.read_flow_run_input(run.id, gate_key(STEP)))["nonce"]

    secret = env.secrets.slack_signing_secret
    seq = iter(range(1, 1000))

    async def click(
        user: str,
        *,
        action: str = "approve",
        use_nonce: str = nonce,
        forged: bool = False,
        run_id: UUID = run.id,
        resend: tuple | None = None,
    ):
        body, headers = resend or (None, None)
        if body is None:
            body = click_body(
                user, run_id, STEP, use_nonce, action, action_ts=f"{int(clock.now)}.{next(seq):06d}"
            )
            headers = slack_headers("forged" if forged else secret, body, int(clock.now))
        r = await client_.post("/slack/interactions", content=body, headers=headers)
        return r.status_code, r.json().get("error", r.json()["outcome"]), (body, headers)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as client_:
        assert (await click("U0SECLEAD", forged=True))[:2] == (401, "unauthorized")
        assert (await click("U0EVIL"))[:2] == (403, "not_an_approver")
        assert (await click("U0ONCALL"))[:2] == (403, "self_approval")  # the run's initiator
        assert (await click("U0SECLEAD", run_id=uuid.uuid4()))[:2] == (404, "no_such_run")
        assert (await click("U0SECLEAD", use_nonce="stale-nonce-123"))[:2] == (409, "stale_step")
        status, outcome, sent = await click("U0SECLEAD")
        assert (status, outcome) == (200, "vote-accepted")
        assert (await click("U0SECLEAD", resend=sent))[:2] == (409, "repeated_request")
        assert (await click("U0SECLEAD", action="deny"))[:2] == (409, "already_voted")
        # Quorum is 2: the gate, woken by the vote, counts it and pauses again rather than finishing.
        await paused(run.id, not_key=first_pause)
        assert not task.done()
        assert (await click("U0CISO"))[:2] == (200, "vote-accepted")
        result = await asyncio.wait_for(task, 90)
        assert result == {"outcome": "approved", "approvers": ["U0CISO", "U0SECLEAD"]}
        assert (await click("U0IRLEAD"))[:2] == (409, "closed_run")  # the run has completed
    await app.state.intake.aclose()

    records = [r for r in read_audit(settings.intake.state_dir / "audit.jsonl") if r["source"] == "slack"]
    assert [r["outcome"] for r in records] == [
        "rejected-signature",
        "refused-not-approver",
        "refused-self-approval",
        "refused-no-such-run",
        "refused-stale",
        "vote-accepted",
        "refused-repeated",
        "refused-repeated",
        "vote-accepted",
        "refused-closed",
    ]
    assert all(
        r["run_id"] == str(run.id)
        for r in records[1:]
        if r["outcome"] != "refused-no-such-run" and r.get("note") != "repeated_request"
    )
