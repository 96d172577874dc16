"""What a store has to offer the intake and the Meta client: the interfaces both backends implement.

One contract suite (tests/contract/test_state_store.py, test_state_ledger.py) runs against every
implementation, so a behaviour the intake relies on is stated there once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from waguard.intake.claims import Claim, PendingStart
from waguard.meta.ledger import BudgetLedger


class IntakeState(Protocol):
    """The intake's memory: delivery nonces with a TTL, incident claims and the runs they started.

    Calls are synchronous and short; the intake makes them from its event loop thread only.
    """

    def group(self) -> asyncio.Future[None]:
        """The commit this loop turn's deliveries wait for before they are answered."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """One atomic unit (re-entrant); undone whole if the block raises."""
        ...

    def remember(self, key: str, *, now: float, ttl_s: float) -> bool:
        """Record a nonce; True if new (or expired), False for a replay: across every replica."""
        ...

    def is_live(self, key: str, *, now: float) -> bool:
        """True when `key` is surely a live nonce, known without a round trip; False: not known so
        cheaply (`remember` decides)."""
        ...

    def forget(self, key: str) -> None: ...

    def prune(self, *, now: float) -> int: ...

    def claim(self, base: str, playbook: str, *, now: float, quiet_s: float,
              build: Callable[[int], tuple[str, dict[str, Any]]]) -> Claim:
        """Join the open incident for (base, playbook) or open the next generation: racing claimers
        of one key get exactly one `new`."""
        ...

    def close_incidents(self, base: str, *, now: float) -> list[str]: ...

    def open_run(self, base: str, playbook: str) -> tuple[str, str] | None: ...

    def close_incident(self, incident_id: str, *, now: float) -> None: ...

    def set_run(self, incident_id: str, run_id: str) -> None: ...

    def run_of(self, incident_id: str) -> str | None: ...

    def pending(self) -> list[PendingStart]:
        """Incidents whose run has not started, whichever replica claimed them."""
        ...

    def take_stale_pending(self, *, now: float, older_than_s: float, hold_s: float) -> list[PendingStart]:
        """Pending starts opened at least `older_than_s` ago and not held by another replica: each goes
        to one caller, held for `hold_s` (its claimer died, or is still retrying: Prefect's idempotency
        key makes a doubled start one run)."""
        ...

    def incident_count(self) -> int: ...

    def deliveries(self, incident_id: str) -> int: ...

    def close(self) -> None: ...


__all__ = ["BudgetLedger", "IntakeState"]  # BudgetLedger lives beside the SQLite ledger (meta room)
