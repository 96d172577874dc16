"""Typed manual steps: what Meta offers no API for, a person does, and the run verifies.

The run posts exact instructions, pauses, and goes on only when the outcome can be read back. A
watchdog polls that read-back while paused and wakes the run as soon as it holds, so a responder
who forgets to press "done" does not stall containment; pressing "done" early changes nothing but a
timeline note. As in approvals, the pause is never allowed to expire (that would fail the run).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from pydantic import Field, SecretStr

from waguard.containment import StepReport, VerificationFailed
from waguard.incident import IncidentRecord
from waguard.meta.errors import MetaError
from waguard.runtime import Ports, graph_from_vault

PAUSE_BACKSTOP_S = 120


class ManualStepDone(RunInput):
    """The Prefect UI form a responder submits after doing a manual step."""

    done_by: str = Field(description="Who did it (your approver id).")
    note: str = Field("", max_length=500)
    via: str = "ui"


@dataclass
class ManualStep:
    run_id: UUID
    step: str
    incident: IncidentRecord
    check: Callable[[], Awaitable[bool]]  # reads the target: True once the outcome is there
    timeout_s: int
    poll_interval_s: int = 2
    clock: Callable[[], float] = time.monotonic

    async def wait(self, instructions: str, say: Callable[[str], Awaitable[None]]) -> str:
        """Block until `check()` holds; returns who (or what) completed it."""
        if await self.check():
            self.incident.append(self.step, "already", "outcome already present")
            return "already"
        self.incident.append(self.step, "started", "manual step requested")
        await say(instructions)
        deadline = self.clock() + self.timeout_s
        round_ = 0
        while True:
            if await self.check():
                self.incident.append(self.step, "done", "outcome verified by read-back")
                return "verified"
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise VerificationFailed(f"manual step {self.step} not done within {self.timeout_s}s")
            key = f"{self.step}-{round_}"
            round_ += 1
            watchdog = asyncio.create_task(self._watch(key, self.clock() + remaining))
            try:
                form = await apause_flow_run(
                    wait_for_input=ManualStepDone.with_initial_data(description=instructions, done_by=""),
                    timeout=int(remaining) + PAUSE_BACKSTOP_S, poll_interval=self.poll_interval_s, key=key)
            finally:
                watchdog.cancel()
            if form.via == "ui":
                self.incident.append(self.step, "info", "responder reported done", actor=form.done_by,
                                     data={"note": form.note})

    async def _watch(self, key: str, wake_at: float) -> None:
        async with get_client() as client:
            while True:
                await asyncio.sleep(self.poll_interval_s)
                if self.clock() < wake_at and not await self.check():
                    continue
                run = await client.read_flow_run(self.run_id)
                if run.state and run.state.is_paused() and run.state.state_details.pause_key == key:
                    await client.resume_flow_run(self.run_id, run_input={"done_by": "waguard", "via": "watchdog"})
                    return


def app_secret_instructions(ports: Ports, incident_id: str) -> str:
    meta, vault = ports.settings.meta, ports.settings.vault
    return (
        f"*Manual step: reset the app secret* (incident {incident_id}). Meta has no API for this.\n"
        f"1. Open App Dashboard › Settings › Basic for app {meta.app_id} and click *Reset* next to App Secret.\n"
        f"2. Write the new secret into Vault without it touching your shell history:\n"
        f"   `read -rs S && printf %s \"$S\" | VAULT_ADDR={vault.addr} bao kv put -mount={vault.kv_mount} "
        f"{meta.app_secret_path} value=-`\n"
        f"3. waguard notices the new Vault version on its own and verifies it against Graph; "
        f"you may also press *Resume* in the Prefect UI."
    )


async def new_app_secret_written(ports: Ports, started_at: datetime) -> bool:
    """Vault holds an app-secret version written after the incident began, and Graph accepts it."""
    meta = await ports.vault.read_metadata(ports.settings.meta.app_secret_path)
    if meta.versions[meta.current_version].created_time < started_at:
        return False
    fresh = await graph_from_vault(ports.settings, ports.vault)
    try:
        await fresh.list_phone_numbers(ports.settings.meta.waba_id)
        return True
    except MetaError:
        return False  # e.g. written to Vault but not yet reset in the dashboard
    finally:
        await fresh.aclose()


async def verify_app_secret_rotated(ports: Ports, started_at: datetime) -> StepReport:
    """New secret's appsecret_proof accepted, the previous version's rejected, by Graph itself."""
    report = StepReport(step="verify-app-secret")
    previous = await previous_app_secret_version(ports, started_at)
    await ports.reload_graph()
    await ports.graph.list_phone_numbers(ports.settings.meta.waba_id)  # new proof works (raises if not)
    old = await graph_from_vault(ports.settings, ports.vault, app_secret_version=previous)
    try:
        await old.list_phone_numbers(ports.settings.meta.waba_id)
        raise VerificationFailed("Graph still accepts appsecret_proof made with the old app secret")
    except MetaError as err:
        report.acted.append(f"old proof rejected (Meta code {err.code})")
    finally:
        await old.aclose()
    report.verified = True
    return report


async def previous_app_secret_version(ports: Ports, started_at: datetime) -> int:
    """The app-secret version that was current when the incident began (the leaked one)."""
    path = ports.settings.meta.app_secret_path
    meta = await ports.vault.read_metadata(path)
    previous = max((v for v, info in meta.versions.items()
                    if info.created_time < started_at and not info.destroyed), default=None)
    if previous is None:
        raise VerificationFailed(f"no app-secret version older than the incident at {path}")
    return previous


async def open_rotation_window(ports: Ports, started_at: datetime, window_s: int) -> datetime:
    """Let the intake accept webhooks signed with the previous secret until `until`, then no more."""
    previous_version = await previous_app_secret_version(ports, started_at)
    until = datetime.now(UTC) + timedelta(seconds=window_s)
    value = json.dumps({"previous_version": previous_version, "until": until.isoformat()})
    await ports.vault.write_secret(ports.settings.intake.rotation_window_path, SecretStr(value))
    return until
