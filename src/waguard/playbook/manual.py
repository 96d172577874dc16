"""Typed manual steps: what Meta offers no API for, a person does, and the run verifies.

The run posts exact instructions, pauses, and goes on only when the outcome can be read back. A
watchdog polls that read-back while paused and wakes the run as soon as it holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from pydantic import Field

from waguard.playbook.timeline import IncidentRecord
from waguard.steps.report import VerificationFailed

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
