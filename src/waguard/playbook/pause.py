"""The one way a run waits for people: pause until a deadline, and be woken early when what it waits on
arrives. Approval gates (`approval.py`) and manual steps (`manual.py`) both wait through `pause_until`.

Two Prefect traps shape this (see reference/prefect-notes.md §1.3): a pause that times out fails the
run beyond repair, so a run never lets one expire. It pauses until the next deadline it cares about and
arms a watchdog in the flow's own event loop that wakes the pause first (at the deadline, or as soon as
`woken()` holds); Prefect's own timeout sits PAUSE_BACKSTOP_S later as a backstop.

A wake ends the pause without any run input (Paused -> Running, as a resume does, minus the answer), so
the form a person sees holds only their own fields and nothing they fill can be mistaken for, or
discard, a wake: `WakeableForm.aload` returns None when the pause ended without a form. A premature
wake is harmless: the caller re-reads what it waits on and its clock, and pauses again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.responses import SetStateStatus
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from prefect.input.actions import aread_flow_run_input, ensure_flow_run_id
from prefect.states import Running

PAUSE_BACKSTOP_S = 120  # Prefect's own pause timeout sits this far past our watchdog

F = TypeVar("F", bound="WakeableForm")


class WakeableForm(RunInput):
    """A pause's form that may also end unanswered (woken by `wake_pause`)."""

    @classmethod
    async def aload(cls: type[F], keyset: Any, flow_run_id: UUID | None = None) -> F | None:  # type: ignore[override]
        """The responder's form, or None when the pause was woken rather than answered."""
        run_id = ensure_flow_run_id(flow_run_id)
        if await aread_flow_run_input(keyset["response"], flow_run_id=run_id) is None:
            return None
        return await super().aload(keyset, flow_run_id=run_id)


async def wake_pause(client: Any, run_id: UUID, key: str | None = None) -> bool:
    """End the run's current pause (only the one named `key`, if given) without answering its form.

    The waiting loop then re-reads what it waits on (stored votes, updates, a read-back, its clock).
    Returns whether a pause was ended; a pause that ended meanwhile is left alone.
    """
    run = await client.read_flow_run(run_id)
    state = run.state
    if not (state and state.is_paused()) or (key is not None and state.state_details.pause_key != key):
        return False
    result = await client.set_flow_run_state(run_id, Running())
    return result.status is SetStateStatus.ACCEPT


async def pause_until(form: type[F], *, run_id: UUID, key: str, wait_s: float, poll_interval_s: float,
                      woken: Callable[[], Awaitable[bool]], clock: Callable[[], float]) -> F | None:
    """Pause the current flow run under `key` for at most `wait_s`, showing `form`.

    Returns the submitted form, or None when the pause was woken: by the deadline, by `woken()`
    turning true (checked every `poll_interval_s`), or by anyone calling `wake_pause`.
    A pause key is used once per run (Prefect answers a repeated key with its old input): callers
    give each pause its own.
    """
    wait_s = max(wait_s, 0.5)
    watchdog = asyncio.create_task(_watch(run_id, key, clock() + wait_s, poll_interval_s, woken, clock))
    try:
        return await apause_flow_run(wait_for_input=form, timeout=int(wait_s) + PAUSE_BACKSTOP_S,
                                     poll_interval=int(max(poll_interval_s, 1)), key=key)
    finally:
        watchdog.cancel()


async def _watch(run_id: UUID, key: str, wake_at: float, poll_interval_s: float,
                 woken: Callable[[], Awaitable[bool]], clock: Callable[[], float]) -> None:
    """Wake the pause named `key` at `wake_at`, or as soon as `woken()` holds. Only that pause: a later
    one has its own watchdog; one not registered yet is tried again on the next poll."""
    async with get_client() as client:
        while True:
            await asyncio.sleep(poll_interval_s)
            if clock() < wake_at and not await woken():
                continue
            if await wake_pause(client, run_id, key):
                return
