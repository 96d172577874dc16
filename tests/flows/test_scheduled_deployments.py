"""The two scheduled deployments (issue 16) as their schedule runs them: a run created on the stack's
Prefect server from prefect.yaml's deployment, executed by the stack's launcher (not in-process),
read back from where its outcome lives (the Prefect artifact, the run's timeline, the simulator, Vault).

Each starts from the world a drill seeds (`reset_world`): the demo business with one planted drift.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.client.schemas.objects import StateType

from tests.support.runs import run_state, until
from waguard.drills.scenario import load_scenarios
from waguard.drills.world import reset_world
from waguard.local.stack import MESSAGING_TOKEN_PATH
from waguard.playbook.timeline import IncidentRecord
from waguard.vault.client import VaultClient

DRILLS = Path(__file__).resolve().parents[2] / "runbooks" / "drills"
FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


def changes(local_stack) -> list[str]:
    """Every Graph call since the world was reset that could have changed something (POST, DELETE)."""
    return [f"{r['method']} {r['path']}" for r in local_stack.meta_requests()
            if r.get("method") in ("POST", "DELETE") and not str(r.get("path", "")).startswith("/_sim")]


async def run_deployment(name: str, parameters: dict) -> UUID:
    """Create a run of `<name>/<name>` (what its schedule does) and wait for the launcher to end it."""
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(f"{name}/{name}")
        run = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)

    async def final() -> StateType | None:
        state = await run_state(run.id)
        return state if state in FINAL else None

    assert await until(final, f"the {name} run ends") == StateType.COMPLETED
    return run.id


async def artifact(key: str, run_id: UUID) -> str:
    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    assert len(found) == 1, found
    return str(found[0].data)


async def drill_world(local_stack, scenario: str) -> VaultClient:
    vault = VaultClient.from_settings(local_stack.settings.vault)  # the operator's root token
    await reset_world(local_stack.settings, local_stack.stack.urls, vault, load_scenarios(DRILLS)[scenario])
    return vault


async def test_posture_audit_finds_the_planted_admin_and_nothing_else(local_stack) -> None:
    await drill_world(local_stack, "stale-admin-drift")  # Mallory, an ADMIN added 5 days ago, no alert
    run_id = await run_deployment("posture-audit", {"alert": False})  # report only: no takeover here

    events = IncidentRecord(local_stack.settings.incidents_dir, f"posture-audit-{run_id}").events()
    [audit] = [e for e in events if e.step == "audit"]
    found = [(f["kind"], f["target"], f["severity"]) for f in audit.data["findings"]]
    assert found == [("unknown_admin", "6000000009", "critical")]  # the demo business itself: clean
    assert "access for 5 d" in audit.data["findings"][0]["detail"]
    assert [e.step for e in events if e.step == "alert-intake"] == []
    assert (events[-1].step, events[-1].outcome, events[-1].detail) == ("close", "done", "1 finding(s)")
    table = await artifact("posture-audit", run_id)
    assert "| critical | unknown_admin | `6000000009` |" in table
    assert changes(local_stack) == []  # read-only


async def test_credential_rotation_plan_names_the_old_token_and_changes_nothing(local_stack) -> None:
    vault = await drill_world(local_stack, "token-past-90-days")  # 95 days old, never expires
    before = await vault.read_metadata(MESSAGING_TOKEN_PATH)
    run_id = await run_deployment("credential-rotation", {"plan": True})

    table = await artifact("credential-rotation", run_id)
    planned = [line for line in table.splitlines() if line.startswith("- rotate-token:")]
    assert len(planned) == 1 and MESSAGING_TOKEN_PATH in planned[0], table  # its own token is young
    assert "/access_tokens" in planned[0]
    assert changes(local_stack) == []
    assert (await vault.read_metadata(MESSAGING_TOKEN_PATH)).current_version == before.current_version
    # A plan leaves no timeline: nothing happened.
    assert IncidentRecord(local_stack.settings.incidents_dir, f"credential-rotation-{run_id}").events() == []


async def test_credential_rotation_with_young_credentials_rotates_nothing(local_stack) -> None:
    vault = await drill_world(local_stack, "stale-admin-drift")  # every credential fresh
    before = await vault.read_metadata(MESSAGING_TOKEN_PATH)
    run_id = await run_deployment("credential-rotation", {})

    events = IncidentRecord(local_stack.settings.incidents_dir, f"credential-rotation-{run_id}").events()
    tokens = [e for e in events if e.step == "rotate-token"]
    assert [(e.outcome, e.data["acted"]) for e in tokens] == [("done", []), ("done", [])]
    assert {p for e in tokens for p in e.data["already"]} == {MESSAGING_TOKEN_PATH, "meta/system-user-token"}
    assert [e.step for e in events if e.step == "revoke-replaced-token"] == []
    assert (events[-1].step, events[-1].detail) == ("close", "nothing due")
    assert changes(local_stack) == []
    assert (await vault.read_metadata(MESSAGING_TOKEN_PATH)).current_version == before.current_version
    assert "| rotate-token | - |" in await artifact("credential-rotation", run_id)
