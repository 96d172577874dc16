"""The intake's replay cache: recent nonces in memory and an append-only log, older ones in a table.

A B-tree keyed by random nonces makes every delivery write a page of its own to the WAL. So the
newest `memory_max` nonces live in a dict, made durable by appending to `nonce_log` (appends share
its last page; a tombstone row records a forgotten nonce), which is replayed into the dict at open.
Past `memory_max` (a busy WABA with `messages` subscribed sends millions a day, and nonces are
kept for 30 days), the oldest spill, a chunk per commit, to `nonces`, keyed as every nonce was
before; a nonce not in memory is then looked up there. A quiet intake never spills and never reads
it. Being the file's only writer (store.py's lock) is what makes the dict the truth.
"""

from __future__ import annotations

import heapq
import itertools
import sqlite3
from typing import Literal

MEMORY_MAX = 250_000  # nonces kept in memory (about 330 bytes each: some 80 MB at the bound)
SPILL_CHUNK = 1024  # the most moved to the table by one commit

SCHEMA = """
CREATE TABLE IF NOT EXISTS nonce_log (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    expires REAL NOT NULL,
    live INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS nonce_log_expires ON nonce_log (expires);
CREATE TABLE IF NOT EXISTS nonces (
    key TEXT PRIMARY KEY,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_expires ON nonces (expires);
"""
APPEND = "INSERT INTO nonce_log (seq, key, expires, live) VALUES (?, ?, ?, ?)"
Entry = tuple[float, int]  # (expires, seq of its log row)


class Nonces:
    """Live nonces: the newest in memory (with their log rows), the rest in the `nonces` table."""

    def __init__(self, db: sqlite3.Connection, live: dict[str, Entry], next_seq: int,
                 memory_max: int = MEMORY_MAX) -> None:
        self._db, self._live, self._seq, self.memory_max = db, live, next_seq, memory_max
        self._expiry = [(expires, key) for key, (expires, _) in live.items()]
        heapq.heapify(self._expiry)
        self.spilled = db.execute("SELECT 1 FROM nonces LIMIT 1").fetchone() is not None

    @classmethod
    def read(cls, db: sqlite3.Connection, memory_max: int = MEMORY_MAX) -> Nonces:
        """Create the tables if needed and replay the log."""
        db.executescript(SCHEMA)
        live: dict[str, Entry] = {}
        seq = 0
        for seq, key, expires, remembered in db.execute(
                "SELECT seq, key, expires, live FROM nonce_log ORDER BY seq"):
            live.pop(key, None)  # the newest row is last in the dict, as it is in the log
            if remembered:
                live[key] = (expires, seq)
        return cls(db, live, seq + 1, memory_max)

    def take(self, key: str, *, now: float, expires: float) -> tuple[int, Entry | None] | Literal[False]:
        """Remember `key` unless it is live: False for a replay, else the seq of the row to append
        and what memory held before (to undo)."""
        earlier = self._live.get(key)
        if earlier is not None and earlier[0] > now:
            return False
        if self.spilled:
            row = self._db.execute("SELECT expires FROM nonces WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] > now:
                return False
        if earlier is not None:
            del self._live[key]  # to the end: the dict keeps the log's order
        seq = self.next_seq()
        self._live[key] = (expires, seq)
        heapq.heappush(self._expiry, (expires, key))
        return seq, earlier

    def in_memory(self, key: str, *, now: float) -> bool:
        entry = self._live.get(key)
        return entry is not None and entry[0] > now

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq - 1

    def drop(self, key: str) -> Entry | None:
        """Forget `key` in memory; what memory held, if anything (the caller deletes it from the table)."""
        return self._live.pop(key, None)

    def undo(self, changes: list[tuple[str, Entry | None]]) -> None:
        """Put back what `take` and `drop` changed, newest first."""
        for key, earlier in reversed(changes):
            if earlier is None:
                self._live.pop(key, None)
            else:
                self._live[key] = earlier
                heapq.heappush(self._expiry, (earlier[0], key))

    def prune(self, *, now: float) -> int:
        """Forget the nonces in memory expired at `now`; return how many."""
        dropped = 0
        while self._expiry and self._expiry[0][0] <= now:
            expires, key = heapq.heappop(self._expiry)
            entry = self._live.get(key)
            if entry is not None and entry[0] == expires:  # not remembered again since
                del self._live[key]
                dropped += 1
        return dropped

    def spill(self) -> list[tuple[str, Entry]]:
        """Move the oldest nonces past `memory_max` (one chunk) to the table, inside the caller's
        transaction; what moved, for `unspill` if that transaction fails."""
        over = len(self._live) - self.memory_max
        if over <= 0:
            return []
        moved = list(itertools.islice(self._live.items(), min(over, SPILL_CHUNK)))
        self._db.executemany("INSERT INTO nonces (key, expires) VALUES (?, ?) "
                             "ON CONFLICT (key) DO UPDATE SET expires = excluded.expires",
                             [(key, expires) for key, (expires, _) in moved])
        self._db.executemany("DELETE FROM nonce_log WHERE seq = ?", [(seq,) for _, (_, seq) in moved])
        for key, _ in moved:
            del self._live[key]
        self.spilled = True
        if len(self._expiry) > 2 * len(self._live) + SPILL_CHUNK:  # spilled and stale entries: rebuilt
            self._expiry = [(expires, key) for key, (expires, _) in self._live.items()]
            heapq.heapify(self._expiry)
        return moved

    def unspill(self, moved: list[tuple[str, Entry]]) -> None:
        """Memory as it was before a `spill` whose transaction was rolled back (order aside)."""
        for key, entry in moved:
            self._live.setdefault(key, entry)
