"""Which store a process uses, from the one `state.dsn` setting (WAGUARD_STATE__DSN).

Empty: the SQLite files of one machine, as before (intake.state_dir/intake.sqlite3, meta.ledger_path).
A postgresql:// URL: the shared database, for every intake replica and every run. The choice is made
here only, where the intake and the Graph client are built; nothing else looks at the setting.
"""

from __future__ import annotations

from waguard.intake.store import IntakeStore
from waguard.meta.ledger import RegistrationLedger
from waguard.settings import Settings
from waguard.state.protocols import BudgetLedger, IntakeState


def uses_postgres(settings: Settings) -> bool:
    return bool(settings.state.dsn)


def open_intake_store(settings: Settings) -> IntakeState:
    """The intake's store; a ConfigError naming WAGUARD_STATE__DSN if its database is unusable."""
    if uses_postgres(settings):
        from waguard.state.intake_pg import PostgresIntakeStore  # psycopg only where it is used

        return PostgresIntakeStore(settings.state.dsn)
    return IntakeStore(settings.intake.state_dir / "intake.sqlite3")


def open_ledger(settings: Settings) -> BudgetLedger:
    """The registration-budget ledger; a ConfigError naming WAGUARD_STATE__DSN if its database is unusable."""
    if uses_postgres(settings):
        from waguard.state.ledger_pg import PostgresLedger

        return PostgresLedger(settings.state.dsn)
    return RegistrationLedger.from_settings(settings.meta)
