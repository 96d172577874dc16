"""Which store a process uses, from the one `state.dsn` setting (WAGUARD_STATE__DSN).

Empty: the SQLite files of one machine, as before (intake.state_dir/intake.sqlite3, meta.ledger_path).
A postgresql:// URL: the shared database, for every intake replica and every run. The choice is made
here only, where the intake and the Graph client are built; nothing else looks at the setting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from waguard.meta.ledger import RegistrationLedger
from waguard.settings import Settings
from waguard.state.protocols import BudgetLedger, IntakeState

log = logging.getLogger(__name__)


def uses_postgres(settings: Settings) -> bool:
    return bool(settings.state.dsn)


def open_intake_store(settings: Settings) -> IntakeState:
    """The intake's store; a ConfigError naming WAGUARD_STATE__DSN if its database is unusable."""
    if uses_postgres(settings):
        from waguard.state.intake_pg import PostgresIntakeStore  # psycopg only where it is used

        return PostgresIntakeStore(settings.state.dsn)
    # Imported here: waguard.intake imports the playbook ports, which import this module (a cycle).
    from waguard.intake.store import IntakeStore

    return IntakeStore(settings.intake.state_dir / "intake.sqlite3")


def open_ledger(settings: Settings) -> BudgetLedger:
    """The registration-budget ledger; a ConfigError naming WAGUARD_STATE__DSN if its database is unusable."""
    if uses_postgres(settings):
        from waguard.state.ledger_pg import PostgresLedger

        return PostgresLedger(settings.state.dsn)
    return RegistrationLedger.from_settings(settings.meta)


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
