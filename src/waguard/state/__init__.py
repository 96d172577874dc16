"""waguard's own shared state, behind small interfaces with two backends.

`protocols` names what the intake (claims, replay cache, pending starts) and the registration-budget
ledger need from a store. The SQLite implementations (waguard.intake.store, waguard.meta.ledger) are
the single-machine default; the PostgreSQL ones (`intake_pg`, `ledger_pg`) let several intake replicas
and launchers share one database. So do the incident timelines (`waguard.playbook.timeline`'s files, or
`timeline_pg`) and the intake's audit log (`waguard.intake.audit`'s files, or `audit_pg`). `backends`
picks one from the `state.dsn` setting; approvals are Prefect flow-run inputs (in Prefect's database)
plus the decision on the timeline.
"""
