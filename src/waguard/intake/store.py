"""The intake's memory, in SQLite under `state_dir`: delivery nonces with a TTL, and incident → run.

Two tables, one file, so "this delivery is new" and "this incident starts a run" commit together:
a crash between them can neither lose an incident (nonce stored, incident not) nor start it twice.

- `nonces`: delivery ids, `(ts, signature)` pairs and body hashes, each kept for the provider's retry
  horizon (Meta retries for 7 days, GitHub redelivers by hand, so the default TTL is 30 days).
- `incidents`: one row per (incident key, playbook, generation) with the parameters the run gets and,
  once the start went through, its run id. An incident closes when its source says it resolved, or
  after a quiet period without deliveries; the next alert about the same key then opens generation
  n+1. Prefect's idempotency key is permanent (prefect-notes §1.4), so the generation is part of it.

All calls are synchronous and short (WAL, synchronous=NORMAL: no fsync per commit; checkpoints run
in a thread of their own); the service calls them from its event loop thread only, so no await ever
splits a check from its update.

Group commit: the deliveries handled in one turn of the event loop write inside one transaction,
each in a savepoint of its own (`group`, then `transaction`), which commits at the start of the next
turn; each delivery is answered only after that commit returned. Durability: with WAL and
synchronous=NORMAL a returned COMMIT has written its frames to the WAL file with write(2), so they
are in the OS page cache and a killed intake (SIGKILL, OOM, crash) loses no answered delivery; only
an OS crash or power cut can lose the last commits before a checkpoint's fsync. synchronous=FULL
would fsync every commit (milliseconds on most disks) to cover that too; the goal is the killed
process, and Alertmanager, GitHub and Meta retry an unanswered delivery anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRUNE_EVERY = 2000  # nonce inserts between two sweeps of expired rows
CHECKPOINT_EVERY_S = 2.0
OPEN_RUNS_KEPT = 4096  # open_run answers kept in memory (cleared whole when full)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nonces (
    key TEXT PRIMARY KEY,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_expires ON nonces (expires);
CREATE TABLE IF NOT EXISTS incidents (
    base TEXT NOT NULL,
    playbook TEXT NOT NULL,
    generation INTEGER NOT NULL,
    incident_id TEXT NOT NULL UNIQUE,
    parameters TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    run_id TEXT,
    closed INTEGER NOT NULL DEFAULT 0,
    opened REAL NOT NULL,
    last_seen REAL NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (base, playbook, generation)
);
"""


@dataclass(frozen=True)
class Claim:
    """What a delivery did to an incident: opened it (`new`) or joined the open one."""

    incident_id: str
    playbook: str
    generation: int
    new: bool
    run_id: str | None
    parameters: dict[str, Any]


@dataclass(frozen=True)
class PendingStart:
    """An incident whose run has not been started yet (or whose start has not gone through)."""

    incident_id: str
    playbook: str
    parameters: dict[str, Any]


class IntakeStore:
    """Nonce cache and incident map over one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the app may be built in one thread and served from another;
        # it is still used from one thread at a time (the server's event loop).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._inserts = 0
        self._depth = 0
        self._batch: asyncio.Future[None] | None = None  # the open group commit, if any
        self.commits = 0  # group commits made (how many deliveries share one: deliveries / commits)
        # open_run answers, asked on every delivery: this connection is the file's only writer, so they
        # stay true until it changes which incidents are open or have runs (then: cleared).
        self._open_runs: dict[tuple[str, str], tuple[str, str] | None] = {}
        # Checkpoints (the only fsyncs in WAL mode with synchronous=NORMAL) run in a thread of their
        # own, not inside a delivery's commit on the event loop.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(path,), daemon=True,
                                              name="intake-sqlite-checkpoint")
        self._checkpointer.start()

    def _checkpoint_loop(self, path: Path) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(CHECKPOINT_EVERY_S):
                with contextlib.suppress(sqlite3.Error):  # busy now: the next round catches up
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def close(self) -> None:
        """Commit an open group, stop the checkpointer (after a last checkpoint), close the database."""
        if self._batch is not None:
            self._commit_group()
        self._stop.set()
        self._checkpointer.join(timeout=10)
        self._db.close()

    def group(self) -> asyncio.Future[None]:
        """The commit this loop turn's deliveries share, opened now if none is open.

        Write inside `transaction()` after this call, then await the future before answering: it
        resolves once the group's COMMIT returned, or raises its error (every delivery of the group
        then fails, none is answered 2xx).
        """
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._db.execute("BEGIN IMMEDIATE")
            self._batch = loop.create_future()
            loop.call_soon(self._commit_group)
        return self._batch

    def _commit_group(self) -> None:
        batch, self._batch = self._batch, None
        if batch is None:
            return
        self.commits += 1
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            self._open_runs.clear()
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            if not batch.done():
                batch.set_exception(err)
        else:
            if not batch.done():
                batch.set_result(None)

    def transaction(self) -> _Unit:
        """Group calls into one atomic unit (re-entrant: inner blocks join the outer one).

        Inside an open group (`group`) the unit is a savepoint, undone alone if the block raises and
        committed with the group; otherwise it is a transaction of its own, committed on leaving.
        """
        return _Unit(self)

    # -- nonces ---------------------------------------------------------------------------------

    def remember(self, key: str, *, now: float, ttl_s: float) -> bool:
        """Record a nonce; True if it is new (or its earlier record had expired), False for a replay."""
        cur = self._db.execute(
            "INSERT INTO nonces (key, expires) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET expires = excluded.expires WHERE nonces.expires <= ?",
            (key, now + ttl_s, now),
        )
        self._inserts += 1
        if self._inserts % PRUNE_EVERY == 0:
            self.prune(now=now)
        return cur.rowcount == 1

    def forget(self, key: str) -> None:
        """Drop a nonce (a delivery that could not be processed may then be retried)."""
        self._db.execute("DELETE FROM nonces WHERE key = ?", (key,))

    def prune(self, *, now: float) -> int:
        """Delete expired nonces; return how many."""
        return self._db.execute("DELETE FROM nonces WHERE expires <= ?", (now,)).rowcount

    # -- incidents ------------------------------------------------------------------------------

    def claim(self, base: str, playbook: str, *, now: float, quiet_s: float,
              build: Callable[[int], tuple[str, dict[str, Any]]]) -> Claim:
        """Join the open incident for (base, playbook), or open the next generation of it.

        Args:
            base: the incident key from the source (Alertmanager group, GitHub alert, WABA + playbook).
            playbook: the playbook the incident runs.
            now: the current Unix time.
            quiet_s: an open incident with no delivery for this long is over; the next one is new.
            build: given a generation, the incident id and run parameters for a new incident.
        """
        with self.transaction():
            # A join (most deliveries) in one statement: the latest generation, if open and not quiet.
            joined = self._db.execute(
                "UPDATE incidents SET last_seen = ?, deliveries = deliveries + 1 "
                "WHERE base = ? AND playbook = ? AND closed = 0 AND ? - last_seen <= ? AND generation = "
                "(SELECT max(generation) FROM incidents WHERE base = ? AND playbook = ?) "
                "RETURNING generation, incident_id, run_id",
                (now, base, playbook, now, quiet_s, base, playbook)).fetchall()
            if joined:
                generation, incident_id, run_id = joined[0]
                return Claim(incident_id, playbook, generation, False, run_id, {})
            row = self._db.execute(
                "SELECT max(generation) FROM incidents WHERE base = ? AND playbook = ?",
                (base, playbook)).fetchone()
            generation = (row[0] or 0) + 1
            incident_id, params = build(generation)
            self._open_runs.clear()
            self._db.execute(
                "INSERT INTO incidents "
                "(base, playbook, generation, incident_id, parameters, opened, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (base, playbook, generation, incident_id, json.dumps(params, sort_keys=True), now, now))
            return Claim(incident_id, playbook, generation, True, None, params)

    def close_incidents(self, base: str, *, now: float) -> list[str]:
        """Close every open incident for `base` (its source said it resolved); return their ids."""
        self._open_runs.clear()
        with self.transaction():
            ids = [r[0] for r in self._db.execute(
                "SELECT incident_id FROM incidents WHERE base = ? AND closed = 0", (base,))]
            self._db.execute("UPDATE incidents SET closed = 1, last_seen = ? WHERE base = ? AND closed = 0",
                             (now, base))
        return ids

    def open_run(self, base: str, playbook: str) -> tuple[str, str] | None:
        """(incident id, run id) of the open incident for (base, playbook), once its run has started."""
        key = (base, playbook)
        if key in self._open_runs:
            return self._open_runs[key]
        row = self._db.execute(
            "SELECT incident_id, run_id FROM incidents WHERE base = ? AND playbook = ? AND closed = 0 "
            "AND run_id IS NOT NULL ORDER BY generation DESC LIMIT 1", (base, playbook)).fetchone()
        if len(self._open_runs) >= OPEN_RUNS_KEPT:
            self._open_runs.clear()
        found = self._open_runs[key] = (row[0], row[1]) if row else None
        return found

    def close_incident(self, incident_id: str, *, now: float) -> None:
        """Close one incident (its run has ended): the next delivery for its key opens a new one."""
        self._open_runs.clear()
        with self.transaction():
            self._db.execute("UPDATE incidents SET closed = 1, last_seen = ? WHERE incident_id = ?",
                             (now, incident_id))

    def set_run(self, incident_id: str, run_id: str) -> None:
        """Record the run an incident started."""
        self._open_runs.clear()
        self._db.execute("UPDATE incidents SET run_id = ?, status = 'started' WHERE incident_id = ?",
                         (run_id, incident_id))

    def run_of(self, incident_id: str) -> str | None:
        """The run id of an incident, if its run has started."""
        row = self._db.execute("SELECT run_id FROM incidents WHERE incident_id = ?",
                               (incident_id,)).fetchone()
        return row[0] if row else None

    def pending(self) -> list[PendingStart]:
        """Incidents whose run has not started (to resume after a restart)."""
        rows = self._db.execute(
            "SELECT incident_id, playbook, parameters FROM incidents "
            "WHERE status = 'pending' ORDER BY opened")
        return [PendingStart(i, p, json.loads(params)) for i, p, params in rows]

    def take_stale_pending(self, *, now: float, older_than_s: float, hold_s: float) -> list[PendingStart]:
        """Pending starts opened at least `older_than_s` ago (the periodic sweep). One replica per file:
        no other replica to hold them against, so `hold_s` is unused."""
        rows = self._db.execute(
            "SELECT incident_id, playbook, parameters FROM incidents "
            "WHERE status = 'pending' AND opened <= ? ORDER BY opened", (now - older_than_s,))
        return [PendingStart(i, p, json.loads(params)) for i, p, params in rows]

    def incident_count(self) -> int:
        """How many incidents (all generations) the store knows."""
        return int(self._db.execute("SELECT count(*) FROM incidents").fetchone()[0])

    def deliveries(self, incident_id: str) -> int:
        """How many deliveries opened or joined an incident."""
        row = self._db.execute("SELECT deliveries FROM incidents WHERE incident_id = ?",
                               (incident_id,)).fetchone()
        return int(row[0]) if row else 0


class _Unit:
    """`IntakeStore.transaction`'s context manager (a class: a generator-based one costs a few
    microseconds more, twice per delivery)."""

    __slots__ = ("_store", "_outer", "_commit", "_rollback")

    def __init__(self, store: IntakeStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        store = self._store
        self._outer = not store._depth
        if not self._outer:
            store._depth += 1
            return
        begin, self._commit, self._rollback = (
            ("SAVEPOINT unit", "RELEASE unit", "ROLLBACK TO unit") if store._batch is not None
            else ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"))
        store._db.execute(begin)
        store._depth = 1

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        store = self._store
        if not self._outer:
            store._depth -= 1
            return
        try:
            if kind is None:
                store._db.execute(self._commit)
            else:
                store._open_runs.clear()
                store._db.execute(self._rollback)
                if store._batch is not None:
                    store._db.execute(self._commit)  # a savepoint rolled back to is still open until released
        finally:
            store._depth = 0
