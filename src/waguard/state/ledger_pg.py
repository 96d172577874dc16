"""The register/deregister budget in PostgreSQL, shared by every launcher and run on every machine.

Same rules as waguard.meta.ledger (10 attempts per number in a moving 72 h window, recorded before
the call is sent, register and deregister sharing one budget). Racers never over-spend: `reserve`
first upserts the number's row in `registration_numbers`, which takes its row lock until the
transaction ends, so two reservations for one number count and insert one after the other; numbers
do not wait on each other. A connection per call, as in the SQLite ledger: safe from any thread.

Each call waits up to `reconnect_s` for a server that is away (a restart under a run): a reservation
is one transaction, so repeating it after a failure records it once; if the first try committed and
only its answer was lost, the attempt is counted twice, which errs on the side of the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from typing import TypeVar

import psycopg

from waguard.meta.errors import RegistrationBudgetExhausted
from waguard.meta.ledger import REGISTRATION_LIMIT, REGISTRATION_WINDOW_S, Action, LedgerEntry, check_attempt
from waguard.state.postgres import RECONNECT_S, connect, open_checked, retried

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS registration_numbers (
    phone_number_id TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS registration_attempts (
    seq BIGSERIAL PRIMARY KEY,
    phone_number_id TEXT NOT NULL REFERENCES registration_numbers,
    action TEXT NOT NULL CHECK (action IN ('register', 'deregister')),
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS registration_attempts_by_number ON registration_attempts (phone_number_id, at);
"""


class PostgresLedger:
    """Counts register/deregister attempts per number (waguard.state.protocols.BudgetLedger)."""

    def __init__(self, dsn: str, *, reconnect_s: float = RECONNECT_S) -> None:
        self._dsn, self._reconnect_s = dsn, reconnect_s
        open_checked(dsn, role="ledger", schema=SCHEMA, reconnect_s=reconnect_s).close()

    def __repr__(self) -> str:
        return "PostgresLedger()"

    def _connection(self) -> psycopg.Connection:
        return connect(self._dsn, role="ledger")

    def _call(self, attempt: Callable[[], T]) -> T:
        """`attempt`, repeated while the server is away (bounded); then StateStoreUnavailable."""
        return retried(self._dsn, self._reconnect_s, attempt)

    def reserve(self, phone_number_id: str, action: Action, now: float) -> int:
        """Record an attempt about to be sent; return how many remain in the window after it.

        Raises:
            RegistrationBudgetExhausted: 10 attempts already sit in the window; nothing is recorded.
            ValueError: a malformed id, action or time; nothing is recorded.
        """
        check_attempt(phone_number_id, now, action)

        def attempt() -> int:
            with closing(self._connection()) as conn, conn.transaction():
                # The upsert locks the number's row until commit: the count below cannot go stale.
                conn.execute(
                    "INSERT INTO registration_numbers (phone_number_id) VALUES (%s) "
                    "ON CONFLICT (phone_number_id) DO UPDATE SET phone_number_id = excluded.phone_number_id",
                    (phone_number_id,))
                times = _times_in_window(conn, phone_number_id, now)
                if len(times) >= REGISTRATION_LIMIT:
                    raise RegistrationBudgetExhausted(
                        phone_number_id, limit=REGISTRATION_LIMIT, window_s=REGISTRATION_WINDOW_S,
                        retry_at=times[len(times) - REGISTRATION_LIMIT] + REGISTRATION_WINDOW_S)
                conn.execute(
                    "INSERT INTO registration_attempts (phone_number_id, action, at) VALUES (%s, %s, %s)",
                    (phone_number_id, action, now))
            return REGISTRATION_LIMIT - len(times) - 1

        return self._call(attempt)

    def remaining(self, phone_number_id: str, now: float) -> int:
        """Attempts still allowed for this number at time `now`."""
        check_attempt(phone_number_id, now)

        def attempt() -> int:
            with closing(self._connection()) as conn:
                return max(0, REGISTRATION_LIMIT - len(_times_in_window(conn, phone_number_id, now)))

        return self._call(attempt)

    def history(self, phone_number_id: str) -> list[LedgerEntry]:
        """Every attempt recorded for this number, oldest first."""
        check_attempt(phone_number_id, 0.0)

        def attempt() -> list[tuple[str, Action, float]]:
            with closing(self._connection()) as conn:
                return conn.execute(
                    "SELECT phone_number_id, action, at FROM registration_attempts "
                    "WHERE phone_number_id = %s ORDER BY at, seq", (phone_number_id,)).fetchall()

        return [LedgerEntry(pn, action, at) for pn, action, at in self._call(attempt)]


def _times_in_window(conn: psycopg.Connection, phone_number_id: str, now: float) -> list[float]:
    rows = conn.execute(
        "SELECT at FROM registration_attempts WHERE phone_number_id = %s AND at > %s ORDER BY at",
        (phone_number_id, now - REGISTRATION_WINDOW_S)).fetchall()
    return [at for (at,) in rows]
