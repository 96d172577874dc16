"""Alert updates delivered to a running playbook: a joined alert adds targets, a resolve is news.

The intake stores each update as a flow-run input `waguard-update-<hex>` on the incident's run (like
Slack votes, durable even when the run is not paused) and wakes a pending approval. The run reads
them: before approval the gate sees them on wake and the run re-plans and asks again (a new nonce:
votes for the old set are stale); after approval, the run looks once more before it closes and, if
new targets came, asks for those and contains them in the same run.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from pydantic import BaseModel, Field

from waguard.playbook.pause import wake_pause

UPDATE_PREFIX = "waguard-update"


class RunUpdate(BaseModel):
    """What a later delivery about the same incident says."""

    kind: Literal["joined", "resolved"]
    parameters: dict[str, Any] = Field(default_factory=dict, description="The delivery's target parameters.")
    source: str = ""


async def post_update(client: Any, run_id: UUID, update: RunUpdate) -> None:
    """Store `update` on the run and wake its pause (intake side; `client` is a Prefect client)."""
    await client.create_flow_run_input(run_id, f"{UPDATE_PREFIX}-{secrets.token_hex(8)}",
                                       update.model_dump_json(), sender="waguard-intake")
    # Wake whichever pause is current (no answer given): the gate re-reads votes and updates on waking.
    await wake_pause(client, run_id)


class UpdateFeed:
    """The run's side: updates not read yet, oldest first."""

    def __init__(self, run_id: UUID) -> None:
        self.run_id = run_id
        self.seen: set[str] = set()

    async def pending(self) -> bool:
        async with get_client() as client:
            return bool(await client.filter_flow_run_input(self.run_id, UPDATE_PREFIX, 1, self.seen))

    async def take(self) -> list[RunUpdate]:
        async with get_client() as client:
            items = await client.filter_flow_run_input(self.run_id, UPDATE_PREFIX, 100, self.seen)
        out = []
        for item in sorted(items, key=lambda i: i.created or 0):
            self.seen.add(item.key)
            try:
                out.append(RunUpdate.model_validate(json.loads(item.value)))
            except ValueError:
                continue
        return out


def merge_targets(current: dict[str, list[str]], parameters: dict[str, Any],
                  filters: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Add an update's list values to the run's target lists (order kept, no repeats).

    For a filter parameter (`filters`) an empty list stays empty: it means "no filter" (every template
    of the statuses, every number), which already covers anything an update could name.
    """
    merged = {}
    for name, values in current.items():
        extra = parameters.get(name)
        if (values or name not in filters) and isinstance(extra, list):
            values = list(dict.fromkeys([*values, *(str(v) for v in extra)]))
        merged[name] = list(values)
    return merged
