"""The register/deregister budget, kept on disk so no run can lock a number out.

Meta allows 10 register/deregister requests per phone number in a moving 72-hour window and answers
error 133016 after that, locking the number out of both calls until the window frees (reference
meta-graph-api.md section 1). Meta counts requests, not successes, so an attempt is recorded BEFORE
it is sent, failed or not. Register and deregister share one budget here: Meta's pages state the
limit for both calls without saying whether they are counted apart, and sharing can only be safer.

One SQLite file, shared by every process on the machine (flows, drills, a responder's CLI):
`BEGIN IMMEDIATE` takes the write lock before counting, so two processes can never both spend the
last unit. A fresh connection per call keeps the ledger safe to use from any thread.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

from waguard.meta.errors import RegistrationBudgetExhausted
from waguard.settings import MetaSettings

REGISTRATION_LIMIT = 10
REGISTRATION_WINDOW_S = 72 * 3600.0
LOCK_TIMEOUT_S = 30.0  # how long to wait for another process's transaction before giving up

Action = Literal["register", "deregister"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    phone_number_id TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('register', 'deregister')),
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_number ON attempts (phone_number_id, at);
"""


@dataclass(frozen=True)
class LedgerEntry:
    """One recorded attempt: which number, which call, when (unix seconds)."""

    phone_number_id: str
    action: Action
    at: float


class BudgetLedger(Protocol):
    """What the Graph client needs from a ledger: this SQLite one, or waguard.state.ledger_pg's."""

    def reserve(self, phone_number_id: str, action: Action, now: float) -> int:
        """Record an attempt about to be sent; return how many remain. Never over-spends, however many
        processes race (RegistrationBudgetExhausted, nothing recorded)."""
        ...

    def remaining(self, phone_number_id: str, now: float) -> int: ...

    def history(self, phone_number_id: str) -> list[LedgerEntry]: ...


class RegistrationLedger:
    """Counts register/deregister attempts per number in Meta's moving 72 h window."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as conn:
            conn.executescript(_SCHEMA)

    @classmethod
    def from_settings(cls, meta: MetaSettings) -> RegistrationLedger:
        """The ledger at `meta.ledger_path`."""
        return cls(meta.ledger_path)

    def __repr__(self) -> str:
        return f"RegistrationLedger({str(self.path)!r})"

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: no implicit transactions, so BEGIN IMMEDIATE below is the only one.
        with closing(sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None)) as conn:
            yield conn

    def reserve(self, phone_number_id: str, action: Action, now: float) -> int:
        """Record an attempt about to be sent and return how many remain in the window after it.

        Raises:
            RegistrationBudgetExhausted: 10 attempts already sit in the window; nothing is recorded.
            ValueError: a malformed id, action or time; nothing is recorded.
        """
        check_attempt(phone_number_id, now, action)
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                times = _times_in_window(conn, phone_number_id, now)
                if len(times) >= REGISTRATION_LIMIT:
                    # The budget frees when enough of the oldest attempts leave the window.
                    retry_at = times[len(times) - REGISTRATION_LIMIT] + REGISTRATION_WINDOW_S
                    raise RegistrationBudgetExhausted(
                        phone_number_id,
                        limit=REGISTRATION_LIMIT,
                        window_s=REGISTRATION_WINDOW_S,
                        retry_at=retry_at,
                    )
                conn.execute(
                    "INSERT INTO attempts (phone_number_id, action, at) VALUES (?, ?, ?)",
                    (phone_number_id, action, now),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return REGISTRATION_LIMIT - len(times) - 1

    def remaining(self, phone_number_id: str, now: float) -> int:
        """Attempts still allowed for this number at time `now`."""
        check_attempt(phone_number_id, now)
        with self._connection() as conn:
            return max(0, REGISTRATION_LIMIT - len(_times_in_window(conn, phone_number_id, now)))

    def history(self, phone_number_id: str) -> list[LedgerEntry]:
        """Every attempt ever recorded for this number, oldest first (kept for the incident record)."""
        check_attempt(phone_number_id, 0.0)
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT phone_number_id, action, at FROM attempts WHERE phone_number_id = ? ORDER BY at, seq",
                (phone_number_id,),
            ).fetchall()
        return [LedgerEntry(pn, action, at) for pn, action, at in rows]


def _times_in_window(conn: sqlite3.Connection, phone_number_id: str, now: float) -> list[float]:
    # An attempt at t counts while now - t < 72 h; attempts "in the future" (clock stepped back) count.
    rows = conn.execute(
        "SELECT at FROM attempts WHERE phone_number_id = ? AND at > ? ORDER BY at",
        (phone_number_id, now - REGISTRATION_WINDOW_S),
    ).fetchall()
    return [at for (at,) in rows]


def check_attempt(phone_number_id: str, now: float, action: str | None = None) -> None:
    """Refuse a malformed id, time or (when given) action before anything is recorded (both backends)."""
    if action is not None and action not in get_args(Action):
        raise ValueError("action must be 'register' or 'deregister'")
    if not isinstance(phone_number_id, str) or not phone_number_id.isdigit() or not phone_number_id.isascii():
        raise ValueError("phone_number_id must be a numeric Graph object id")
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise ValueError("now must be a finite unix time in seconds")
