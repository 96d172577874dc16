"""Plan mode: every mutating call goes through `Effects`, which records it instead of making it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from waguard.meta import wire
from waguard.playbook.timeline import IncidentTimeline


class PlannedCall(BaseModel):
    """A mutating call a plan-mode run would make."""

    step: str
    target: str
    call: str  # e.g. "POST /v23.0/5000000001/deregister" or "vault kv put secret/meta/app-secret"


def describe(req: wire.GraphRequest, version: str) -> str:
    """The exact Graph call, with parameter names but no values (values may be secret)."""
    keys = sorted({*req.params, *(req.json or {}), *(req.form or {})})
    suffix = f" ({', '.join(keys)})" if keys else ""
    return f"{req.method} /{version}{req.path}{suffix}"


class Effects:
    """Every mutating call goes through here, so plan mode can record it instead of making it.

    A plain class for the same reason as `Ports`: tasks must append to the one list.
    """

    def __init__(self, plan: bool, incident: IncidentTimeline, graph_version: str) -> None:
        self.plan, self.incident, self.graph_version = plan, incident, graph_version
        self.planned: list[PlannedCall] = []

    async def graph(self, step: str, target: str, req: wire.GraphRequest,
                    act: Callable[[], Awaitable[Any]]) -> bool:
        """Make (or in plan mode record) one Graph call. Returns True when it was made."""
        return await self.other(step, target, describe(req, self.graph_version), act)

    async def other(self, step: str, target: str, call: str, act: Callable[[], Awaitable[Any]]) -> bool:
        if self.plan:
            self.planned.append(PlannedCall(step=step, target=target, call=call))
            return False
        await act()
        self.incident.append(step, "done", call, target=target)
        return True
