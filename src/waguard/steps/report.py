"""What a step reports: ids and outcomes only, never a secret value."""

from __future__ import annotations

from pydantic import BaseModel, Field

from waguard.errors import WaguardError


class StepReport(BaseModel):
    """What a step did: ids and outcomes only, never a secret value."""

    step: str
    acted: list[str] = Field(default_factory=list)     # targets changed by this run
    already: list[str] = Field(default_factory=list)   # targets found already in the wanted state
    failed: dict[str, str] = Field(default_factory=dict)
    verified: bool = False

    @property
    def summary(self) -> str:
        parts = [f"{len(self.acted)} changed", f"{len(self.already)} already done"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return ", ".join(parts) + ("; verified" if self.verified else "; NOT verified")


class VerificationFailed(WaguardError):
    """Read-back shows the target is not in the state the step promised."""
