"""Incident timelines in PostgreSQL, shared by every launcher and run on every machine (the scaled
profile). Same records, chain and state as the files of waguard.playbook.timeline.

- `timeline_records` is append-only: one row per record, its canonical JSON stored as text (the digest
  the next record carries is of exactly those bytes), primary key (incident_id, seq); a trigger refuses
  UPDATE and DELETE (only TRUNCATE, the drill world's reset, empties it).
- `incident_timelines` has one row per incident: its state (JSONB, merged key by key in one statement)
  and the lock appends take. `append` upserts that row first, which holds its row lock until commit,
  then reads the last record and inserts the next: two writers racing on one incident extend one chain,
  one after the other. The primary key would refuse a doubled seq even without the lock.

A connection per store, used under a lock (runs call from Prefect's worker threads). A server that is
away (a restart under a run) is waited for, up to `reconnect_s`, each call on a new connection: a
read repeats harmlessly; an append whose commit landed but whose answer was lost is written twice
(the chain stays whole; the step shows twice), which beats a run failing in the middle of containment.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from waguard.playbook.timeline import Outcome, ReadsTimeline, TimelineEvent, canonical, check_id, next_event
from waguard.state.postgres import RECONNECT_S, connect, open_checked, retried

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS incident_timelines (
    incident_id TEXT PRIMARY KEY,
    state JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE TABLE IF NOT EXISTS timeline_records (
    incident_id TEXT NOT NULL REFERENCES incident_timelines,
    seq INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (incident_id, seq)
);
CREATE OR REPLACE FUNCTION timeline_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'timeline_records is append-only (% refused)', TG_OP;
END $$;
CREATE OR REPLACE TRIGGER timeline_records_append_only BEFORE UPDATE OR DELETE ON timeline_records
    FOR EACH ROW EXECUTE FUNCTION timeline_records_append_only();
"""
TABLES = ("incident_timelines", "timeline_records")


class PostgresTimelines:
    """The PostgreSQL timeline store (waguard.playbook.timeline.TimelineStore)."""

    def __init__(self, dsn: str, *, reconnect_s: float = RECONNECT_S) -> None:
        self._dsn, self._reconnect_s = dsn, reconnect_s
        self._db = open_checked(dsn, role="timelines", schema=SCHEMA, reconnect_s=reconnect_s)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "PostgresTimelines()"

    def call(self, work: Callable[[psycopg.Connection], T]) -> T:
        """`work(connection)` under the store's lock, repeated on a new connection while the server is
        away (bounded); then StateStoreUnavailable naming the setting."""

        def attempt() -> T:
            if self._db.closed or self._db.broken:
                self._db = connect(self._dsn, role="timelines")
            return work(self._db)

        with self._lock:
            return retried(self._dsn, self._reconnect_s, attempt)

    def close(self) -> None:
        self._db.close()

    def open(self, incident_id: str) -> PostgresTimeline:
        check_id(incident_id)
        return PostgresTimeline(self, incident_id)

    def versions(self) -> dict[str, int]:
        """Incident id -> records in its timeline (the intake's scrape-time readers: what changed)."""
        rows = self.call(lambda conn: conn.execute(
            "SELECT incident_id, count(*) FROM timeline_records GROUP BY incident_id").fetchall())
        return {i: int(n) for i, n in rows}

    def records(self, incident_id: str) -> list[dict[str, Any]]:
        return self.open(incident_id).raw()

    def ids(self) -> list[str]:
        rows = self.call(lambda conn: conn.execute(
            "SELECT DISTINCT incident_id FROM timeline_records ORDER BY 1").fetchall())
        return [r[0] for r in rows]


class PostgresTimeline(ReadsTimeline):
    """One incident's timeline and state in the shared database (an IncidentTimeline)."""

    def __init__(self, store: PostgresTimelines, incident_id: str) -> None:
        self._store, self.incident_id = store, incident_id

    def __repr__(self) -> str:
        return f"PostgresTimeline({self.incident_id!r})"

    def raw(self) -> list[dict[str, Any]]:
        rows = self._store.call(lambda conn: conn.execute(
            "SELECT record FROM timeline_records WHERE incident_id = %s ORDER BY seq",
            (self.incident_id,)).fetchall())
        return [json.loads(r[0]) for r in rows]

    def append(self, step: str, outcome: Outcome, detail: str = "", *, target: str | None = None,
               actor: str | None = "waguard", data: dict[str, Any] | None = None) -> TimelineEvent:
        def attempt(conn: psycopg.Connection) -> TimelineEvent:
            with conn.transaction():
                # The upsert takes the incident's row lock until commit: the last record cannot go stale.
                conn.execute(
                    "INSERT INTO incident_timelines (incident_id) VALUES (%s) ON CONFLICT (incident_id) "
                    "DO UPDATE SET incident_id = excluded.incident_id", (self.incident_id,))
                row = conn.execute(
                    "SELECT record FROM timeline_records WHERE incident_id = %s ORDER BY seq DESC LIMIT 1",
                    (self.incident_id,)).fetchone()
                event = next_event([json.loads(row[0])] if row else [], step, outcome, detail, target,
                                   actor, data)
                conn.execute("INSERT INTO timeline_records (incident_id, seq, record) VALUES (%s, %s, %s)",
                             (self.incident_id, event.seq, canonical(event.model_dump()).decode()))
            return event

        return self._store.call(attempt)

    def state(self) -> dict[str, Any]:
        row = self._store.call(lambda conn: conn.execute(
            "SELECT state FROM incident_timelines WHERE incident_id = %s", (self.incident_id,)).fetchone())
        return dict(row[0]) if row else {}

    def remember(self, **values: Any) -> dict[str, Any]:
        # One statement: two writers' keys both land (a read-modify-write would lose one).
        row = self._store.call(lambda conn: conn.execute(
            "INSERT INTO incident_timelines (incident_id, state) VALUES (%s, %s) ON CONFLICT (incident_id) "
            "DO UPDATE SET state = incident_timelines.state || excluded.state RETURNING state",
            (self.incident_id, Jsonb(values))).fetchone())
        assert row is not None
        return dict(row[0])
