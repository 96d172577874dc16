"""One active run per playbook and WABA, with the others waiting visibly, in arrival order.

Mutual exclusion is a Prefect global concurrency limit holding one leased slot (a killed holder's
lease lapses and the server frees the slot). Prefect serves waiting acquirers in no particular order
and gives up after a timeout, so waguard keeps its own queue on top of it: every run that wants the
slot marks itself with the flow-run input `waguard-slot` ({"slot", "state", "beat"}). Only the
oldest waiting run (by the flow run's creation time, the server's clock) tries to take the slot; the
others wait as long as it takes, saying once in Slack and on the timeline whom they wait behind.

A waiting run re-writes its mark every BEAT_S; a mark older than STALE_S belongs to a run that died
while waiting and no longer holds anyone back. Runs that are paused, cancelled or ended leave the
queue with their state (only live states are read), so no cleanup is required for the queue to move.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.concurrency._asyncio import AcquireConcurrencySlotTimeoutError
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError

SLOT_INPUT = "waguard-slot"
BEAT_S = 10
STALE_S = 60
# A run's slot is a lease the run renews while alive. Prefect's shortest (60 s) bounds how long a
# killed holder blocks the queue: the server's repossessor frees the slot soon after it lapses.
LEASE_S = 60
LIVE = [StateType.RUNNING, StateType.PAUSED, StateType.PENDING, StateType.CANCELLING]


class IncidentClosedWhileWaiting(Exception):
    """The incident was closed while its run waited for the slot: the run does nothing."""


async def _delete_mark(client: Any, run_id: UUID) -> None:
    try:
        await client.delete_flow_run_input(run_id, SLOT_INPUT)
    except PrefectHTTPStatusError as err:
        if err.response.status_code != 404:
            raise


@dataclass(frozen=True)
class Entrant:
    run_id: UUID
    created: float
    state: Literal["waiting", "holding"]
    beat: float
    incident_id: str | None


@dataclass
class SlotQueue:
    """The queue for one slot, seen from one run."""

    slot: str
    flow_name: str
    run_id: UUID
    poll_s: float = 1.0
    clock: Callable[[], float] = time.time
    _last_beat: float = field(default=float("-inf"))

    async def mark(self, state: Literal["waiting", "holding"]) -> None:
        value = json.dumps({"slot": self.slot, "state": state, "beat": self.clock()})
        async with get_client() as client:
            await _delete_mark(client, self.run_id)
            await client.create_flow_run_input(self.run_id, SLOT_INPUT, value)
        self._last_beat = self.clock()

    async def beat(self) -> None:
        if self.clock() - self._last_beat >= BEAT_S:
            await self.mark("waiting")

    async def leave(self) -> None:
        with contextlib.suppress(Exception):  # best effort: an ended run leaves the queue anyway
            async with get_client() as client:
                await _delete_mark(client, self.run_id)

    async def slot_free(self) -> bool:
        """The limit has a free slot now (a race with another acquirer is settled by the acquisition)."""
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name(self.slot)
        return limit.active_slots < limit.limit

    async def entrants(self) -> list[Entrant]:
        """Live runs of this flow that want or hold this slot, oldest first."""
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[self.flow_name])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=LIVE))),
                limit=200)
            out = []
            for run in runs:
                try:
                    mark = json.loads(await client.read_flow_run_input(run.id, SLOT_INPUT))
                except (ObjectNotFound, PrefectHTTPStatusError, ValueError):
                    continue
                if mark.get("slot") != self.slot:
                    continue
                created = run.created.timestamp() if run.created else 0.0
                out.append(Entrant(run.id, created, mark.get("state", "waiting"), float(mark.get("beat", 0)),
                                   (run.parameters or {}).get("incident_id")))
        return sorted(out, key=lambda e: (e.created, str(e.run_id)))

    def ahead_of_me(self, entrants: list[Entrant]) -> tuple[list[Entrant], Entrant | None]:
        """(waiting runs that arrived before this one, the holder if known)."""
        me = next((e for e in entrants if e.run_id == self.run_id), None)
        now = self.clock()
        mine = (me.created, str(me.run_id)) if me else (float("inf"), "")
        waiting = [e for e in entrants if e.state == "waiting" and e.run_id != self.run_id
                   and now - e.beat < STALE_S and (e.created, str(e.run_id)) < mine]
        holder = next((e for e in entrants if e.state == "holding" and e.run_id != self.run_id), None)
        return waiting, holder


Announce = Callable[[Entrant | None, int], Awaitable[None]]


async def ensure_slot_limit(client: Any, slot: str) -> None:
    """The slot's global concurrency limit (1 holder), created if missing. Prefect's upsert reads, then
    creates: runs starting together on a new WABA all create, and all but one get 409 (seen with
    re-runs of a dead launcher's runs). The limit exists either way: read it again to check its size."""
    try:
        await client.upsert_global_concurrency_limit_by_name(slot, 1)
    except ObjectAlreadyExists:
        await client.upsert_global_concurrency_limit_by_name(slot, 1)


@contextlib.asynccontextmanager
async def hold_slot(queue: SlotQueue, *, announce: Announce, closed: Callable[[], bool],
                    acquired: Callable[[float], Awaitable[None]],
                    held: Callable[[], object] | None = None) -> AsyncIterator[None]:
    """Wait in line for `queue.slot`, then hold it for the body.

    Args:
        announce: called when this run starts waiting, and again when whom it waits behind changes.
        closed: True once the incident was closed meanwhile; the wait ends with IncidentClosedWhileWaiting.
        acquired: called with the seconds waited, once the slot is held (only if the run waited).
        held: called at once when the slot is granted (the launcher records the lease: a dead run's
            slot is then freed at once instead of when its lease lapses).
    """
    async with get_client() as client:
        await ensure_slot_limit(client, queue.slot)
    started = queue.clock()
    await queue.mark("waiting")
    said: tuple[Any, int] | None = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            while True:
                if closed():
                    raise IncidentClosedWhileWaiting(queue.slot)
                waiting, holder = queue.ahead_of_me(await queue.entrants())
                if not waiting and not await queue.slot_free():
                    # Someone holds it: wait here rather than in Prefect's acquisition, whose every
                    # timed-out attempt logs an ERROR (one a second for as long as the wait lasts).
                    await asyncio.sleep(queue.poll_s)
                elif not waiting:
                    try:
                        await stack.enter_async_context(concurrency(
                            queue.slot, occupy=1, timeout_seconds=queue.poll_s, lease_duration=LEASE_S,
                            strict=True))
                        break
                    except AcquireConcurrencySlotTimeoutError:
                        pass
                else:
                    await asyncio.sleep(queue.poll_s)
                now_waiting = (holder.run_id if holder else None, len(waiting))
                if now_waiting != said:
                    said = now_waiting
                    await announce(holder, len(waiting))
                await queue.beat()
            if held is not None:
                held()
            await queue.mark("holding")
            if said is not None:
                await acquired(queue.clock() - started)
            yield
    finally:
        await queue.leave()
