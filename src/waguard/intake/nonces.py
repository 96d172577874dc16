"""The intake's replay cache in memory: every live nonce of the SQLite file, with its expiry.

The file keeps the nonces as an append-only log (`nonce_log`: a row per remembered nonce, a
tombstone per forgotten one, deleted once expired), replayed into this memory at open. Appends
share the WAL's last page; a B-tree keyed by random nonces made every delivery write a page of its
own. Being the file's only writer (store.py's lock) is what makes the memory the truth.
"""

from __future__ import annotations

import heapq
import sqlite3
from typing import Literal

SCHEMA = """
CREATE TABLE IF NOT EXISTS nonce_log (
    key TEXT NOT NULL,
    expires REAL NOT NULL,
    live INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS nonce_log_expires ON nonce_log (expires);
"""
# Files written before the log: their nonces move into it once, at the first open.
_MIGRATE = """
BEGIN IMMEDIATE;
INSERT INTO nonce_log (key, expires) SELECT key, expires FROM nonces ORDER BY expires;
DROP TABLE nonces;
COMMIT;
"""
APPEND = "INSERT INTO nonce_log (key, expires, live) VALUES (?, ?, ?)"


class Nonces:
    """Live nonces and their expiry; a heap of expiries finds the expired ones to prune."""

    def __init__(self, live: dict[str, float]) -> None:
        self._live = live
        self._expiry = [(expires, key) for key, expires in live.items()]
        heapq.heapify(self._expiry)

    @classmethod
    def read(cls, db: sqlite3.Connection) -> Nonces:
        """Create the log if needed (moving an older file's nonces into it) and replay it."""
        db.executescript(SCHEMA)
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'nonces'").fetchone():
            db.executescript(_MIGRATE)
        live: dict[str, float] = {}
        for key, expires, remembered in db.execute("SELECT key, expires, live FROM nonce_log ORDER BY rowid"):
            if remembered:
                live[key] = expires
            else:
                live.pop(key, None)
        return cls(live)

    def take(self, key: str, *, now: float, expires: float) -> float | None | Literal[False]:
        """Remember `key` unless it is live: False for a replay, else its earlier expiry (or None)."""
        earlier = self._live.get(key)
        if earlier is not None and earlier > now:
            return False
        self._live[key] = expires
        heapq.heappush(self._expiry, (expires, key))
        return earlier

    def drop(self, key: str) -> float | None:
        """Forget `key`; its expiry, if it was known."""
        return self._live.pop(key, None)

    def undo(self, changes: list[tuple[str, float | None]]) -> None:
        """Put back what `take` and `drop` changed, newest first."""
        for key, earlier in reversed(changes):
            if earlier is None:
                self._live.pop(key, None)
            else:
                self._live[key] = earlier
                heapq.heappush(self._expiry, (earlier, key))

    def prune(self, *, now: float) -> int:
        """Forget the nonces expired at `now`; return how many."""
        dropped = 0
        while self._expiry and self._expiry[0][0] <= now:
            expires, key = heapq.heappop(self._expiry)
            if self._live.get(key) == expires:  # not remembered again since
                del self._live[key]
                dropped += 1
        return dropped
