"""What the intake's stores hand back about incidents (both backends: store.py, state/intake_pg.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Claim:
    """What a delivery did to an incident: opened it (`new`) or joined the open one."""

    incident_id: str
    playbook: str
    generation: int
    new: bool
    run_id: str | None
    parameters: dict[str, Any]


@dataclass(frozen=True)
class PendingStart:
    """An incident whose run has not been started yet (or whose start has not gone through)."""

    incident_id: str
    playbook: str
    parameters: dict[str, Any]
