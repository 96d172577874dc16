"""waguard's own shared state, behind small interfaces with two backends.

`protocols` names what the intake (claims, replay cache, pending starts) and the registration-budget
ledger need from a store. The SQLite implementations (waguard.intake.store, waguard.meta.ledger) are
the single-machine default; the PostgreSQL ones (`intake_pg`, `ledger_pg`) let several intake replicas
and launchers share one database. `backends` picks one from the `state.dsn` setting.
"""
