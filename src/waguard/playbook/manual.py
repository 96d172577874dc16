"""Typed manual steps: what Meta offers no API for, a person does, and the run verifies.

The run posts exact instructions, then waits through the same pause loop as approvals
(`waguard.playbook.pause.pause_until`): woken as soon as the outcome can be read back, or at the
deadline. A responder's form ("done") is recorded but is never the proof: only the read-back is.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from pydantic import Field

from waguard.playbook.pause import WakeableForm, pause_until
from waguard.playbook.timeline import IncidentTimeline
from waguard.steps.report import VerificationFailed


class ManualStepDone(WakeableForm):
    """The Prefect UI form a responder submits after doing a manual step."""

    done_by: str = Field(min_length=1, description="Who did it (your approver id).")
    note: str = Field("", max_length=500, description="Anything the timeline should say.")


@dataclass
class ManualStep:
    run_id: UUID
    step: str
    incident: IncidentTimeline
    check: Callable[[], Awaitable[bool]]  # reads the target: True once the outcome is there
    timeout_s: int
    poll_interval_s: int = 2
    clock: Callable[[], float] = time.monotonic

    async def wait(self, instructions: str, say: Callable[[str], Awaitable[None]]) -> str:
        """Block until `check()` holds; returns "already" or "verified".

        Raises:
            VerificationFailed: the outcome could not be read back within `timeout_s`.
        """
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
            # Only the description: an initial value would make its field optional in the UI's form.
            form = await pause_until(ManualStepDone.with_initial_data(description=instructions),
                                     run_id=self.run_id, key=f"{self.step}-{round_}", wait_s=remaining,
                                     poll_interval_s=self.poll_interval_s, woken=self.check, clock=self.clock)
            round_ += 1
            if form is not None:  # None: woken (the read-back holds, or the deadline), not answered
                self.incident.append(self.step, "info", "responder reported done", actor=form.done_by,
                                     data={"note": form.note})
