"""The intake's memory, in SQLite under `state_dir`: delivery nonces with a TTL, and incident → run.

One file, so "this delivery is new" and "this incident starts a run" commit together: a crash
between them can neither lose an incident (nonce stored, incident not) nor start it twice.

- nonces: delivery ids, `(ts, signature)` pairs and body hashes, each kept for the provider's retry
  horizon (30 days by default); the newest in memory too (waguard.intake.nonces).
- `incidents`: one row per (incident key, playbook, generation) with the parameters the run gets and,
  once the start went through, its run id. An incident closes when its source says it resolved, or
  after a quiet period without deliveries; the next alert about the same key then opens generation
  n+1. Prefect's idempotency key is permanent (prefect-notes §1.4), so the generation is part of it.

One intake per file, enforced by a lock beside it (replicas share PostgreSQL: state/intake_pg.py).
The only writer can answer its hot questions from memory: is this nonce live, which open incident
does this key join. All calls are synchronous and short; the service makes them from its event loop
thread only, so no await ever splits a check from its update.

Group commit: the deliveries handled in one turn of the event loop write inside one transaction,
which commits at the start of the next turn; each delivery is answered only after that commit
returned (durable against a killed intake: sqlite_file.py). A delivery's writes (its nonce, its
join's `last_seen` and count) stay with the delivery until its unit ends, then with the group, and
go in with the group's COMMIT; a unit that runs SQL of its own (opening or closing an incident) does
it in a savepoint. A unit that raises leaves nothing: its memory changes are undone and its
savepoint rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waguard.intake.claims import Claim, PendingStart
from waguard.intake.nonces import APPEND, MEMORY_MAX, Entry, Nonces
from waguard.intake.sqlite_file import WriterFile

PRUNE_EVERY = 2000  # nonce inserts between two sweeps of expired rows
OPEN_RUNS_KEPT = 4096  # open_run answers kept in memory (cleared whole when full)

_SCHEMA = """
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
_TOUCH = ("UPDATE incidents SET last_seen = max(last_seen, ?), deliveries = deliveries + ? "
          "WHERE incident_id = ?")


@dataclass
class _Writes:
    """Writes made in memory and not in the file yet: a unit's, then its group's."""

    nonces: list[tuple[int, str, float, int]] = field(default_factory=list)  # nonce_log rows
    touches: dict[str, list[float]] = field(default_factory=dict)  # incident id -> [last seen, deliveries]
    undo: list[tuple[str, Entry | None]] = field(default_factory=list)  # (nonce, memory's earlier entry)

    def touch(self, incident: str, seen: float, count: float = 1) -> None:
        mine = self.touches.setdefault(incident, [seen, 0])
        mine[0], mine[1] = max(mine[0], seen), mine[1] + count

    def add(self, other: _Writes) -> None:
        self.nonces += other.nonces
        for incident, (seen, count) in other.touches.items():
            self.touch(incident, seen, count)
        self.undo += other.undo


class IntakeStore:
    """Nonce cache and incident map over one SQLite file, with this process as its only writer."""

    def __init__(self, path: Path, *, nonces_in_memory: int = MEMORY_MAX) -> None:
        self._file = WriterFile(path)
        self._db = self._file.db
        self._db.executescript(_SCHEMA)
        self._nonces = Nonces.read(self._db, nonces_in_memory)
        self._inserts = 0
        self._depth = 0
        self._unit: _Writes | None = None  # the writes of the outermost unit under way
        self._savepoint = False  # that unit ran SQL of its own, in a savepoint
        self._group = _Writes()  # the writes of the open group's finished units
        self._batch: asyncio.Future[None] | None = None  # the open group commit, if any
        self.commits = 0  # group commits made (how many deliveries share one: deliveries / commits)
        # open_run answers, asked on every delivery, and the open incident each (key, playbook) joins:
        # both stay true until this store changes which incidents are open or have runs (then: cleared).
        self._open_runs: dict[tuple[str, str], tuple[str, str] | None] = {}
        self._joins: dict[tuple[str, str], list[Any]] = {}  # [generation, incident id, run id, last seen]

    def close(self) -> None:
        """Commit an open group, then close the file (waguard.intake.sqlite_file)."""
        if self._batch is not None:
            self._commit_group()
        self._file.close()

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
        writes, self._group = self._group, _Writes()
        spilled: list[Any] = []
        try:
            self._write(writes)
            spilled = self._nonces.spill()
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            self._nonces.unspill(spilled)
            self._undo(writes)
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            if not batch.done():
                batch.set_exception(err)
        else:
            if not batch.done():
                batch.set_result(None)

    def _write(self, writes: _Writes) -> None:
        """Put writes made in memory into the open transaction."""
        if writes.nonces:
            self._db.executemany(APPEND, writes.nonces)
        if writes.touches:
            self._db.executemany(_TOUCH, [(seen, count, incident)
                                          for incident, (seen, count) in writes.touches.items()])

    def _undo(self, writes: _Writes) -> None:
        """Forget what undone writes put in memory (newest first)."""
        self._nonces.undo(writes.undo)
        self._open_runs.clear()
        self._joins.clear()

    def _sql(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """Run a statement of a unit's own: inside an open group, in the unit's savepoint. The group's
        finished units are written first, outside it: the statement reads them, and a rollback of
        this unit cannot take them along."""
        if self._unit is not None and self._batch is not None and not self._savepoint:
            self._write(self._group)
            self._group.nonces, self._group.touches = [], {}
            self._db.execute("SAVEPOINT unit")
            self._savepoint = True
        return self._db.execute(sql, params)

    def transaction(self) -> _Unit:
        """Group calls into one atomic unit (re-entrant: inner blocks join the outer one).

        Inside an open group (`group`) the unit's writes join the group when it ends and are committed
        with it, or are undone alone if the block raises; otherwise the unit is a transaction of its
        own, committed on leaving.
        """
        return _Unit(self)

    # -- nonces ---------------------------------------------------------------------------------

    def remember(self, key: str, *, now: float, ttl_s: float) -> bool:
        """Record a nonce; True if it is new (or its earlier record had expired), False for a replay."""
        unit = self._unit
        if unit is None:
            with self.transaction():
                return self.remember(key, now=now, ttl_s=ttl_s)
        taken = self._nonces.take(key, now=now, expires=now + ttl_s)
        if taken is False:
            return False
        seq, earlier = taken
        unit.nonces.append((seq, key, now + ttl_s, 1))
        unit.undo.append((key, earlier))
        self._inserts += 1
        if self._inserts % PRUNE_EVERY == 0:
            self.prune(now=now)
        return True

    def is_live(self, key: str, *, now: float) -> bool:
        """Whether memory holds `key` unexpired (the newest nonces; a spilled one is left to `remember`)."""
        return self._nonces.in_memory(key, now=now)

    def forget(self, key: str) -> None:
        """Drop a nonce (a delivery that could not be processed may then be retried)."""
        unit = self._unit
        if unit is None:
            with self.transaction():
                return self.forget(key)
        earlier = self._nonces.drop(key)
        if earlier is not None:  # the log's tombstone lives as long as the entry it cancels
            unit.nonces.append((self._nonces.next_seq(), key, earlier[0], 0))
            unit.undo.append((key, earlier))
        if self._nonces.spilled:
            self._sql("DELETE FROM nonces WHERE key = ?", (key,))
        return None

    def prune(self, *, now: float) -> int:
        """Delete expired nonces; return how many."""
        dropped = self._nonces.prune(now=now)
        with self.transaction():
            self._sql("DELETE FROM nonce_log WHERE expires <= ?", (now,))
            if self._nonces.spilled:
                dropped += self._sql("DELETE FROM nonces WHERE expires <= ?", (now,)).rowcount
        return dropped

    # -- incidents ------------------------------------------------------------------------------

    def claim(self, base: str, playbook: str, *, now: float, quiet_s: float,
              build: Callable[[int], tuple[str, dict[str, Any]]]) -> Claim:
        """Join the open incident for (base, playbook), or open the next generation of it.

        `base` is the incident key from the source (Alertmanager group, GitHub alert, WABA + playbook);
        an open incident with no delivery for `quiet_s` is over; `build(generation)` gives a new
        incident's id and run parameters.
        """
        with self.transaction():
            unit = self._unit
            assert unit is not None  # inside transaction()
            cached = self._joins.get((base, playbook))
            if cached is not None and now - cached[3] <= quiet_s:  # a join (most deliveries), in memory
                generation, incident_id, run_id, _ = cached
                cached[3] = max(cached[3], now)
                unit.touch(incident_id, now)
                return Claim(incident_id, playbook, generation, False, run_id, {})
            joined = self._sql(
                "UPDATE incidents SET last_seen = ?, deliveries = deliveries + 1 "
                "WHERE base = ? AND playbook = ? AND closed = 0 AND ? - last_seen <= ? AND generation = "
                "(SELECT max(generation) FROM incidents WHERE base = ? AND playbook = ?) "
                "RETURNING generation, incident_id, run_id",
                (now, base, playbook, now, quiet_s, base, playbook)).fetchall()
            if joined:
                generation, incident_id, run_id = joined[0]
                self._joins[(base, playbook)] = [generation, incident_id, run_id, now]
                return Claim(incident_id, playbook, generation, False, run_id, {})
            row = self._sql("SELECT max(generation) FROM incidents WHERE base = ? AND playbook = ?",
                            (base, playbook)).fetchone()
            generation = (row[0] or 0) + 1
            incident_id, params = build(generation)
            self._changed()
            self._sql(
                "INSERT INTO incidents "
                "(base, playbook, generation, incident_id, parameters, opened, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (base, playbook, generation, incident_id, json.dumps(params, sort_keys=True), now, now))
            self._joins[(base, playbook)] = [generation, incident_id, None, now]
            return Claim(incident_id, playbook, generation, True, None, params)

    def _changed(self) -> None:
        """Which incidents are open, or their runs, changed: the cached answers are stale."""
        self._open_runs.clear()
        self._joins.clear()

    def close_incidents(self, base: str, *, now: float) -> list[str]:
        """Close every open incident for `base` (its source said it resolved); return their ids."""
        self._changed()
        with self.transaction():
            ids = [r[0] for r in self._sql(
                "SELECT incident_id FROM incidents WHERE base = ? AND closed = 0", (base,))]
            self._sql("UPDATE incidents SET closed = 1, last_seen = ? WHERE base = ? AND closed = 0",
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
        self._change("UPDATE incidents SET closed = 1, last_seen = ? WHERE incident_id = ?",
                     (now, incident_id))

    def set_run(self, incident_id: str, run_id: str) -> None:
        """Record the run an incident started."""
        self._change("UPDATE incidents SET run_id = ?, status = 'started' WHERE incident_id = ?",
                     (run_id, incident_id))

    def _change(self, sql: str, params: tuple[Any, ...]) -> None:
        self._changed()
        with self.transaction():
            self._sql(sql, params)

    def run_of(self, incident_id: str) -> str | None:
        """The run id of an incident, if its run has started."""
        row = self._db.execute("SELECT run_id FROM incidents WHERE incident_id = ?",
                               (incident_id,)).fetchone()
        return row[0] if row else None

    def pending(self) -> list[PendingStart]:
        """Incidents whose run has not started (to resume after a restart)."""
        return self.take_stale_pending(now=math.inf, older_than_s=0, hold_s=0)

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
        """How many deliveries opened or joined an incident (those of the open group included)."""
        row = self._db.execute("SELECT deliveries FROM incidents WHERE incident_id = ?",
                               (incident_id,)).fetchone()
        pending = [w.touches.get(incident_id, [0, 0])[1] for w in (self._group, self._unit) if w]
        return int(row[0]) + int(sum(pending)) if row else 0


class _Unit:
    """`IntakeStore.transaction`'s context manager (a class: a generator-based one costs a few
    microseconds more, twice per delivery)."""

    __slots__ = ("_store", "_outer")

    def __init__(self, store: IntakeStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        store = self._store
        self._outer = not store._depth
        store._depth += 1
        if self._outer:
            store._unit = _Writes()
            if store._batch is None:  # a transaction of its own
                store._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        store = self._store
        store._depth -= 1
        if not self._outer:
            return
        unit, savepoint = store._unit, store._savepoint
        store._unit, store._savepoint = None, False
        assert unit is not None
        if store._batch is None:
            spilled: list[Any] = []
            try:
                if kind is None:
                    store._write(unit)
                    spilled = store._nonces.spill()
                    store._db.execute("COMMIT")
                    return
            except BaseException:
                store._nonces.unspill(spilled)
                store._undo(unit)
                store._db.execute("ROLLBACK")
                raise
            store._undo(unit)
            store._db.execute("ROLLBACK")
        elif kind is None:
            if savepoint:
                store._db.execute("RELEASE unit")
            store._group.add(unit)
        else:
            store._undo(unit)
            if savepoint:
                store._db.execute("ROLLBACK TO unit")
                store._db.execute("RELEASE unit")  # a savepoint rolled back to is still open until released
