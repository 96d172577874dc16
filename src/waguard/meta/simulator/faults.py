"""Injected faults: what drills use to rehearse a flaky or throttling Graph API.

A fault applies to the next N matching Graph calls (`count`) or to every matching call for S seconds
of the simulator's clock (`seconds`). Kinds:
- `http429`: HTTP 429 with the OAS example body (code 4, subcode 2446079, is_transient);
- `http5xx`: HTTP 500, code 2, is_transient (the OAS example);
- `throttle4`: what an exhausted app budget answers (code 4, usage headers at 100 %);
- `throttle80007`: what an exhausted WABA budget answers (code 80007, BUC header at 100 %);
- `latency`: wait `latency_ms`, then answer normally.
A faulted call (other than latency) never reaches the Graph logic: it changes no state and is not
counted in the usage budgets or the register/deregister budget.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FaultKind = Literal["http429", "http5xx", "throttle4", "throttle80007", "latency"]


class FaultSpec(BaseModel):
    """The body of POST /_sim/faults."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    count: int | None = Field(None, ge=1)
    seconds: float | None = Field(None, gt=0)
    latency_ms: int | None = Field(None, ge=0, le=600_000)
    path_prefix: str | None = Field(
        None, description="Only calls whose path (with or without the version) starts with this."
    )

    @model_validator(mode="after")
    def _one_duration(self) -> FaultSpec:
        if (self.count is None) == (self.seconds is None):
            raise ValueError("give exactly one of count or seconds")
        if self.kind == "latency" and self.latency_ms is None:
            raise ValueError("a latency fault needs latency_ms")
        return self


class Fault(BaseModel):
    """An active fault: its spec, how many calls it has left, and when it ends."""

    id: int
    spec: FaultSpec
    remaining: int | None = None
    until: float | None = None

    def spent(self, now: float) -> bool:
        """Whether the fault has used up its calls or its time."""
        return (self.remaining is not None and self.remaining <= 0) or (
            self.until is not None and now >= self.until
        )

    def matches(self, path: str, unversioned: str, now: float) -> bool:
        """Whether the fault applies to a call on `path` at `now`."""
        if self.spent(now):
            return False
        prefix = self.spec.path_prefix
        return prefix is None or path.startswith(prefix) or unversioned.startswith(prefix)

    def seconds_left(self, now: float) -> float:
        """Seconds until a timed fault ends (0 for a counted one)."""
        return max(0.0, self.until - now) if self.until is not None else 0.0


def activate(fault_id: int, spec: FaultSpec, now: float) -> Fault:
    """A new active fault from its spec."""
    until = now + spec.seconds if spec.seconds is not None else None
    return Fault(id=fault_id, spec=spec, remaining=spec.count, until=until)


def take(faults: list[Fault], path: str, unversioned: str, now: float) -> Fault | None:
    """The first fault that applies to this call, using up one of its counted calls; drops spent ones."""
    faults[:] = [f for f in faults if not f.spent(now)]
    for fault in faults:
        if fault.matches(path, unversioned, now):
            if fault.remaining is not None:
                fault.remaining -= 1
            return fault
    return None
