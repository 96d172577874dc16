"""Incident timelines in PostgreSQL, shared by every launcher and run on every machine (the scaled
profile). Same records, chain and state as the files of waguard.playbook.timeline.

- `timeline_records` is append-only: one row per record, its canonical JSON stored as text (the digest
  the next record carries is of exactly those bytes), primary key (incident_id, seq); a trigger refuses
  UPDATE and DELETE (only TRUNCATE, the drill world's reset, empties it).
- `incident_timelines` has one row per incident: its state (JSONB, merged key by key in one statement)
  and the lock appends take. `append` upserts that row first, which holds its row lock until commit,
  then reads the last record and inserts the next: two writers racing on one incident extend one chain,
  one after the other. The primary key would refuse a doubled seq even without the lock.

A connection per store, used under a lock (runs call from Prefect's worker threads); a lost connection
fails the call under way and is replaced on the next, like the intake's store.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from waguard.playbook.timeline import Outcome, ReadsTimeline, TimelineEvent, canonical, check_id, next_event
from waguard.state.postgres import connect, open_checked

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

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._db = open_checked(dsn, role="timelines", schema=SCHEMA)
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        return "PostgresTimelines()"

    def conn(self) -> psycopg.Connection:
        """The store's connection (call under `lock`), reopened if the server restarted."""
        if self._db.closed or self._db.broken:
            self._db = connect(self._dsn, role="timelines")
        return self._db

    def close(self) -> None:
        self._db.close()

    def open(self, incident_id: str) -> PostgresTimeline:
        check_id(incident_id)
        return PostgresTimeline(self, incident_id)

    def ids(self) -> list[str]:
        with self.lock:
            rows = self.conn().execute(
                "SELECT DISTINCT incident_id FROM timeline_records ORDER BY 1").fetchall()
        return [r[0] for r in rows]


class PostgresTimeline(ReadsTimeline):
    """One incident's timeline and state in the shared database (an IncidentTimeline)."""

    def __init__(self, store: PostgresTimelines, incident_id: str) -> None:
        self._store, self.incident_id = store, incident_id

    def __repr__(self) -> str:
        return f"PostgresTimeline({self.incident_id!r})"

    def raw(self) -> list[dict[str, Any]]:
        with self._store.lock:
            rows = self._store.conn().execute(
                "SELECT record FROM timeline_records WHERE incident_id = %s ORDER BY seq",
                (self.incident_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def append(self, step: str, outcome: Outcome, detail: str = "", *, target: str | None = None,
               actor: str | None = "waguard", data: dict[str, Any] | None = None) -> TimelineEvent:
        with self._store.lock:
            conn = self._store.conn()
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

    def state(self) -> dict[str, Any]:
        with self._store.lock:
            row = self._store.conn().execute(
                "SELECT state FROM incident_timelines WHERE incident_id = %s", (self.incident_id,)).fetchone()
        return dict(row[0]) if row else {}

    def remember(self, **values: Any) -> dict[str, Any]:
        # One statement: two writers' keys both land (a read-modify-write would lose one).
        with self._store.lock:
            row = self._store.conn().execute(
                "INSERT INTO incident_timelines (incident_id, state) VALUES (%s, %s) "
                "ON CONFLICT (incident_id) "
                "DO UPDATE SET state = incident_timelines.state || excluded.state RETURNING state",
                (self.incident_id, Jsonb(values))).fetchone()
        assert row is not None
        return dict(row[0])
