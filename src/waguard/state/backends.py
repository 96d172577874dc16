"""Which store a process uses, from the one `state.dsn` setting (WAGUARD_STATE__DSN).

Empty: the SQLite files of one machine, as before (intake.state_dir/intake.sqlite3, meta.ledger_path).
A postgresql:// URL: the shared database, for every intake replica and every run. The choice is made
here only (the intake's store and audit log, the ledger, the timelines, the drill's reset); nothing
else looks at the setting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from waguard.intake.audit import AuditLog, AuditReader, AuditWriter, FileAuditReader
from waguard.meta.ledger import RegistrationLedger
from waguard.playbook.timeline import FileTimelines, TimelineStore
from waguard.settings import Settings
from waguard.state.protocols import BudgetLedger, IntakeState

if TYPE_CHECKING:  # the intake's collectors (prometheus_client) stay out of every run's imports
    from waguard.intake.response_times import SharedTimelines

log = logging.getLogger(__name__)


def uses_postgres(settings: Settings) -> bool:
    return bool(settings.state.dsn)


def open_intake_store(settings: Settings) -> IntakeState:
    """The intake's store; a ConfigError naming WAGUARD_STATE__DSN if its database is unusable."""
    if uses_postgres(settings):
        from waguard.state.intake_pg import PostgresIntakeStore  # psycopg only where it is used

        return PostgresIntakeStore(settings.state.dsn, reconnect_s=settings.state.reconnect_s)
    # Imported here: waguard.intake imports the playbook ports, which import this module (a cycle).
    from waguard.intake.store import IntakeStore

    return IntakeStore(settings.intake.state_dir / "intake.sqlite3")


def open_ledger(settings: Settings) -> BudgetLedger:
    """The registration-budget ledger; a ConfigError naming WAGUARD_STATE__DSN if its database is unusable."""
    if uses_postgres(settings):
        from waguard.state.ledger_pg import PostgresLedger

        return PostgresLedger(settings.state.dsn, reconnect_s=settings.state.reconnect_s)
    return RegistrationLedger.from_settings(settings.meta)


_timeline_stores: dict[tuple[int, str], TimelineStore] = {}


def open_timelines(settings: Settings) -> TimelineStore:
    """The incident timelines: files under incidents_dir, or the shared database. One PostgreSQL store
    (one connection) per process and DSN, opened on first use: a forked run opens its own instead of
    sharing its parent's socket."""
    if not uses_postgres(settings):
        return FileTimelines(settings.incidents_dir)
    key = (os.getpid(), settings.state.dsn)
    store = _timeline_stores.get(key)
    if store is None:
        from waguard.state.timeline_pg import PostgresTimelines

        store = _timeline_stores[key] = PostgresTimelines(settings.state.dsn,
                                                          reconnect_s=settings.state.reconnect_s)
    return store


LEDGER_TABLES = ("registration_attempts", "registration_numbers")  # waguard.state.ledger_pg's


def forget_ledger(settings: Settings) -> None:
    """Forget every registration attempt (the drill's world reset: they counted against the world it
    replaces): the SQLite file and its journal, or the shared ledger's tables."""
    if uses_postgres(settings):
        from psycopg import sql

        from waguard.state.postgres import connect

        with connect(settings.state.dsn, role="drill") as conn:
            tables = sql.SQL(", ").join(map(sql.Identifier, LEDGER_TABLES))
            conn.execute(sql.SQL("TRUNCATE {}").format(tables))
        return
    path = settings.meta.ledger_path
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


AUDIT_RECORD_BYTES = 300  # about one accepted delivery's record: the table keeps what the files would


def open_audit_log(settings: Settings) -> AuditWriter:
    """The intake's audit writer: its rotated files under intake.state_dir, or the shared table."""
    intake = settings.intake
    if uses_postgres(settings):
        from waguard.state.audit_pg import PostgresAuditLog

        keep = intake.audit_max_bytes * (intake.audit_backups + 1) // AUDIT_RECORD_BYTES
        return PostgresAuditLog(settings.state.dsn, keep_records=keep)
    return AuditLog(intake.state_dir / "audit.jsonl", max_bytes=intake.audit_max_bytes,
                    backups=intake.audit_backups)


def open_audit_reader(settings: Settings) -> AuditReader:
    """Where evidence reads the intake's audit: this machine's files, or every replica's records."""
    if uses_postgres(settings):
        from waguard.state.audit_pg import PostgresAuditLog

        return PostgresAuditLog(settings.state.dsn, reconnect_s=settings.state.reconnect_s)
    return FileAuditReader(settings.intake.state_dir / "audit.jsonl")


def shared_timelines(settings: Settings) -> SharedTimelines | None:
    """For the intake's scrape-time readers of the runs' timelines: the shared database's, on a store
    of their own that does not wait for a server that is away (a scrape answers without them); None
    with files, which the collectors read under incidents_dir themselves."""
    if not uses_postgres(settings):
        return None
    from waguard.state.timeline_pg import PostgresTimelines

    return PostgresTimelines(settings.state.dsn, reconnect_s=0)


def incident_openings(settings: Settings) -> Callable[[], list[tuple[str, str, float]]] | None:
    """For the time-to-contain histogram: a reader of (incident id, playbook, opened) from the shared
    database, on a connection of its own per scrape (scrapes may come from another thread than the
    store's); None with SQLite, whose file the collector reads itself."""
    if not uses_postgres(settings):
        return None
    dsn = settings.state.dsn

    def read() -> list[tuple[str, str, float]]:
        import psycopg

        from waguard.state.postgres import connect

        try:
            with connect(dsn, role="metrics") as conn:
                rows = conn.execute("SELECT incident_id, playbook, opened FROM intake_incidents").fetchall()
        except psycopg.Error as err:  # the scrape still answers, without this histogram's samples
            log.warning("intake: cannot read incidents from the shared store: %s", type(err).__name__)
            return []
        return [(i, p, float(o)) for i, p, o in rows]

    return read
