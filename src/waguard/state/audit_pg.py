"""The intake's audit log in PostgreSQL: every intake replica writes to one table, so evidence reads
one log whichever replica answered a delivery (the scaled profile).

Same records as the files (`waguard.intake.audit.encode_record`, the line stored as text beside its
`at` stamp) and the same window semantics: `read_window` returns the records stamped from `start` to
`end`, in stamp order (ties in insertion order), streamed through a server-side cursor.

Each record is one autocommit INSERT before the delivery is answered, with `synchronous_commit` off on
the writer's connection: the server has the record when `write` returns (an intake crash loses none,
as with the file's write(2) to the OS); a crash of PostgreSQL itself may lose the last few hundred
milliseconds, as an OS crash may lose the file's unflushed tail. Instead of the files' rotation the
table keeps about `keep_records` records: every PRUNE_EVERY writes the older ones are deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg

from waguard.intake.audit import encode_record, stamp
from waguard.state.postgres import RECONNECT_S, connect, open_checked, shown, while_away

SCHEMA = """
CREATE TABLE IF NOT EXISTS intake_audit (
    seq BIGSERIAL PRIMARY KEY,
    at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS intake_audit_at ON intake_audit (at, seq);
"""
TABLES = ("intake_audit",)
PRUNE_EVERY = 1000
PAGE = 1000


class PostgresAuditLog:
    """Writer (waguard.intake.audit.AuditWriter) and reader (AuditReader) of the shared audit table."""

    def __init__(self, dsn: str, *, keep_records: int = 200_000, reconnect_s: float = RECONNECT_S) -> None:
        self._dsn, self.keep_records, self._reconnect_s = dsn, keep_records, reconnect_s
        self.source = f"postgres:{shown(dsn)}#intake_audit"
        open_checked(dsn, role="audit", schema=SCHEMA, reconnect_s=reconnect_s).close()
        self._db: psycopg.Connection | None = None  # the writer's, opened on the first write
        self._lock = threading.Lock()
        self._writes = 0

    def __repr__(self) -> str:
        return "PostgresAuditLog()"

    def _writer(self) -> psycopg.Connection:
        if self._db is None or self._db.closed or self._db.broken:
            self._db = connect(self._dsn, role="audit")
            self._db.execute("SET synchronous_commit = off")
        return self._db

    def write(self, *, at: float, source: str, outcome: str, status: int, verification: str,
              body_sha256: str | None, delivery_id: str | None = None, incident_key: str | None = None,
              run_id: str | None = None, **extra: Any) -> None:
        """Insert one record (`at` is Unix seconds); a lost connection is reopened once."""
        line = encode_record(at=at, source=source, outcome=outcome, status=status, verification=verification,
                             body_sha256=body_sha256, delivery_id=delivery_id, incident_key=incident_key,
                             run_id=run_id, **extra)
        with self._lock:
            for attempt in (1, 2):
                try:
                    self._writer().execute("INSERT INTO intake_audit (at, record) VALUES (%s, %s)",
                                           (stamp(at), line))
                    break
                except psycopg.OperationalError:
                    if attempt == 2 or (self._db is not None and not self._db.broken):
                        raise
            self._writes += 1
            if self._writes % PRUNE_EVERY == 0:
                self.prune()

    def prune(self) -> int:
        """Delete all but the newest `keep_records` records; how many went."""
        return self._writer().execute(
            "DELETE FROM intake_audit WHERE seq <= (SELECT max(seq) FROM intake_audit) - %s",
            (self.keep_records,)).rowcount

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()

    def missing(self) -> str | None:
        return None  # the table exists once the store opened: an empty log is an empty window

    def read_window(self, start: float | None = None, end: float | None = None) -> Iterator[bytes]:
        """The records stamped from `start` to `end`, oldest first, on a connection of the caller's
        own (evidence reads from a worker thread; a server that is away is waited for at connect)."""
        lo = stamp(start) if start is not None else ""
        hi = stamp(end) if end is not None else "~"  # after every digit-led stamp
        opened = while_away(self._dsn, self._reconnect_s, lambda: connect(self._dsn, role="audit-reader"))
        with opened as conn, conn.transaction():
            cur = conn.cursor(name="audit_window")
            cur.itersize = PAGE
            cur.execute("SELECT record FROM intake_audit WHERE at >= %s AND at <= %s ORDER BY at, seq",
                        (lo, hi))
            for (record,) in cur:
                yield (record + "\n").encode()
