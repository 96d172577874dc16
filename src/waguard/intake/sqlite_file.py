"""The intake's SQLite file as its one writer holds it: a lock beside it for the writer's life, WAL
with synchronous=NORMAL (no fsync per commit), and checkpoints (the only fsyncs then) in a thread of
their own rather than inside a delivery's commit on the event loop.

Durability: with WAL and synchronous=NORMAL a returned COMMIT has written its frames to the WAL file
with write(2), so they are in the OS page cache and a killed intake (SIGKILL, OOM, crash) loses no
answered delivery; only an OS crash or power cut can lose the last commits before a checkpoint's
fsync. synchronous=FULL would fsync every commit (milliseconds on most disks) to cover that too; the
goal is the killed process, and Alertmanager, GitHub and Meta retry an unanswered delivery anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from pathlib import Path

from waguard.errors import ConfigError

CHECKPOINT_EVERY_S = 2.0


class WriterFile:
    """An open SQLite file, its writer's lock and its checkpointer; `db` is the writer's connection."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _exclusive(path)
        # check_same_thread=False: the app may be built in one thread and served from another;
        # it is still used from one thread at a time (the server's event loop).
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA wal_autocheckpoint=0")
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
        """Stop the checkpointer (after a last checkpoint), close the database, let go of the lock."""
        self._stop.set()
        self._checkpointer.join(timeout=10)
        self.db.close()
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


def _exclusive(path: Path) -> int:
    """Hold `path`'s lock file: a second intake on the same file would answer from a memory (the
    nonces, the joins) that the first one's writes never reach."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"{path} is in use by another intake (WAGUARD_INTAKE__STATE_DIR): one intake per SQLite "
            "file; replicas share PostgreSQL (WAGUARD_STATE__DSN)") from None
    return fd
