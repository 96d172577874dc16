"""The intake's memory in PostgreSQL, shared by every intake replica (the scaled profile).

Same tables and meaning as waguard.intake.store (nonces with a TTL; incidents by key, playbook and
generation, with their run), but every promise holds across replicas, each through one statement the
database arbitrates rather than a read followed by a write:

- a nonce is new for exactly one replica: `INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`; a
  racer's insert waits for the first one's transaction and then sees the conflict;
- one incident per key: the open generation is read `FOR UPDATE` (joins and closes serialise on it),
  and a new generation is inserted `ON CONFLICT DO NOTHING` on the primary key, so when two replicas
  open it at once exactly one insert lands and the other joins what it inserted;
- pending starts are rows any replica reads: after a replica dies, a live one's periodic sweep takes
  each start left pending a few seconds (one replica per row: `FOR UPDATE SKIP LOCKED`, then held),
  and so does any replica's start; Prefect's idempotency key (the incident id) makes a doubled start
  one run.

No group commit: each delivery's transaction commits when it ends (`group` is already resolved). Row
locks held over a loop turn by two replicas taking the same keys in a different order would deadlock;
a transaction per delivery takes its nonce first, so two replicas handed the same delivery serialise
on it and the loser only sees a replay. No in-process cache of open runs either: another replica may
start or close them at any time.

Calls block the event loop for one round trip each (sub-millisecond on a LAN). A lost connection fails
the call under way (the delivery is answered 5xx and retried by its sender) and is replaced on the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from waguard.intake.claims import Claim, PendingStart
from waguard.intake.store import PRUNE_EVERY
from waguard.state.postgres import RECONNECT_S, connect, open_checked

SCHEMA = """
CREATE TABLE IF NOT EXISTS intake_nonces (
    key TEXT PRIMARY KEY,
    expires DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS intake_nonces_expires ON intake_nonces (expires);
CREATE TABLE IF NOT EXISTS intake_incidents (
    base TEXT NOT NULL,
    playbook TEXT NOT NULL,
    generation INTEGER NOT NULL,
    incident_id TEXT NOT NULL UNIQUE,
    parameters TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    run_id TEXT,
    closed BOOLEAN NOT NULL DEFAULT false,
    opened DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (base, playbook, generation)
);
CREATE INDEX IF NOT EXISTS intake_incidents_pending ON intake_incidents (opened) WHERE status = 'pending';
ALTER TABLE intake_incidents ADD COLUMN IF NOT EXISTS start_held_until DOUBLE PRECISION;
"""


class PostgresIntakeStore:
    """Nonce cache and incident map in one PostgreSQL database (waguard.state.protocols.IntakeState)."""

    def __init__(self, dsn: str, *, reconnect_s: float = RECONNECT_S) -> None:
        self._dsn = dsn
        self._db = open_checked(dsn, role="intake", schema=SCHEMA, reconnect_s=reconnect_s)
        self._tx: psycopg.Connection | None = None  # the connection of the transaction under way
        self._depth = 0
        self._inserts = 0
        self.commits = 0  # transactions committed (one per delivery: there is no group commit)

    def __repr__(self) -> str:
        return "PostgresIntakeStore()"

    def close(self) -> None:
        self._db.close()

    def _conn(self) -> psycopg.Connection:
        if self._tx is not None:
            return self._tx
        if self._db.closed or self._db.broken:  # the server restarted or the network dropped
            self._db = connect(self._dsn, role="intake")
        return self._db

    def _one(self, sql: Any, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        return self._conn().execute(sql, params).fetchone()

    def group(self) -> asyncio.Future[None]:
        """Already resolved: each `transaction` commits on leaving (see the module docstring)."""
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit; inner blocks join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        conn = self._conn()
        self._depth = 1
        try:
            with conn.transaction():
                self._tx = conn
                yield
            self.commits += 1
        finally:
            self._tx, self._depth = None, 0

    # -- nonces ---------------------------------------------------------------------------------

    def remember(self, key: str, *, now: float, ttl_s: float) -> bool:
        cur = self._conn().execute(
            "INSERT INTO intake_nonces (key, expires) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET expires = excluded.expires WHERE intake_nonces.expires <= %s",
            (key, now + ttl_s, now))
        self._inserts += 1
        if self._inserts % PRUNE_EVERY == 0:
            self.prune(now=now)
        return cur.rowcount == 1

    def is_live(self, key: str, *, now: float) -> bool:
        return False  # a query per delivery, fresh ones too: `remember` answers in the transaction

    def forget(self, key: str) -> None:
        self._conn().execute("DELETE FROM intake_nonces WHERE key = %s", (key,))

    def prune(self, *, now: float) -> int:
        return self._conn().execute("DELETE FROM intake_nonces WHERE expires <= %s", (now,)).rowcount

    # -- incidents ------------------------------------------------------------------------------

    def claim(self, base: str, playbook: str, *, now: float, quiet_s: float,
              build: Callable[[int], tuple[str, dict[str, Any]]]) -> Claim:
        with self.transaction():
            row = self._one(
                "SELECT generation, incident_id, closed, last_seen, run_id FROM intake_incidents "
                "WHERE base = %s AND playbook = %s ORDER BY generation DESC LIMIT 1 FOR UPDATE",
                (base, playbook))
            if row is not None:
                generation, incident_id, closed, last_seen, run_id = row
                if not closed and now - last_seen <= quiet_s:
                    self._conn().execute(
                        "UPDATE intake_incidents SET last_seen = greatest(last_seen, %s), "
                        "deliveries = deliveries + 1 WHERE incident_id = %s", (now, incident_id))
                    return Claim(incident_id, playbook, generation, False, run_id, {})
            generation = (row[0] + 1) if row is not None else 1
            incident_id, params = build(generation)
            opened = self._one(
                "INSERT INTO intake_incidents "
                "(base, playbook, generation, incident_id, parameters, opened, last_seen) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING incident_id",
                (base, playbook, generation, incident_id, json.dumps(params, sort_keys=True), now, now))
            if opened is not None:
                return Claim(incident_id, playbook, generation, True, None, params)
            # Another replica opened this generation after our read: its insert won, we join it.
            joined = self._one(
                "UPDATE intake_incidents SET last_seen = greatest(last_seen, %s), "
                "deliveries = deliveries + 1 WHERE base = %s AND playbook = %s AND generation = %s "
                "RETURNING incident_id, run_id", (now, base, playbook, generation))
            if joined is None:  # the conflict was not this key's: an incident id built twice
                raise RuntimeError(f"incident id {incident_id} already belongs to another key")
            return Claim(joined[0], playbook, generation, False, joined[1], {})

    def close_incidents(self, base: str, *, now: float) -> list[str]:
        rows = self._conn().execute(
            "UPDATE intake_incidents SET closed = true, last_seen = %s WHERE base = %s AND NOT closed "
            "RETURNING incident_id", (now, base)).fetchall()
        return [r[0] for r in rows]

    def open_run(self, base: str, playbook: str) -> tuple[str, str] | None:
        row = self._one(
            "SELECT incident_id, run_id FROM intake_incidents WHERE base = %s AND playbook = %s "
            "AND NOT closed AND run_id IS NOT NULL ORDER BY generation DESC LIMIT 1", (base, playbook))
        return (row[0], row[1]) if row else None

    def close_incident(self, incident_id: str, *, now: float) -> None:
        self._conn().execute(
            "UPDATE intake_incidents SET closed = true, last_seen = %s WHERE incident_id = %s",
            (now, incident_id))

    def set_run(self, incident_id: str, run_id: str) -> None:
        self._conn().execute(
            "UPDATE intake_incidents SET run_id = %s, status = 'started' WHERE incident_id = %s",
            (run_id, incident_id))

    def run_of(self, incident_id: str) -> str | None:
        row = self._one("SELECT run_id FROM intake_incidents WHERE incident_id = %s", (incident_id,))
        return row[0] if row else None

    def pending(self) -> list[PendingStart]:
        rows = self._conn().execute(
            "SELECT incident_id, playbook, parameters FROM intake_incidents "
            "WHERE status = 'pending' ORDER BY opened").fetchall()
        return [PendingStart(i, p, json.loads(params)) for i, p, params in rows]

    def take_stale_pending(self, *, now: float, older_than_s: float, hold_s: float) -> list[PendingStart]:
        """One statement: rows a racer has locked are skipped, rows it has taken are held past `now`."""
        rows = self._conn().execute(
            "UPDATE intake_incidents SET start_held_until = %s WHERE incident_id IN ("
            " SELECT incident_id FROM intake_incidents WHERE status = 'pending' AND opened <= %s"
            " AND coalesce(start_held_until, 0) <= %s FOR UPDATE SKIP LOCKED) "
            "RETURNING opened, incident_id, playbook, parameters",
            (now + hold_s, now - older_than_s, now)).fetchall()
        return [PendingStart(i, p, json.loads(params)) for _, i, p, params in sorted(rows)]

    def incident_count(self) -> int:
        row = self._one("SELECT count(*) FROM intake_incidents")
        return int(row[0]) if row else 0

    def deliveries(self, incident_id: str) -> int:
        row = self._one("SELECT deliveries FROM intake_incidents WHERE incident_id = %s", (incident_id,))
        return int(row[0]) if row else 0
