"""The drill's view of the shared-state database (state.dsn): the canary scan reads every table every
waguard store writes, and the world reset forgets the shared registration ledger. Secrets are planted
through the stores' own APIs, into a real PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

import pytest

from waguard.drills.canary import local_texts, max_form_len, scan_texts
from waguard.drills.canary_db import database_texts, table_names
from waguard.meta.ledger import REGISTRATION_LIMIT
from waguard.settings import Settings
from waguard.state.audit_pg import PostgresAuditLog
from waguard.state.backends import forget_ledger, open_ledger
from waguard.state.intake_pg import PostgresIntakeStore
from waguard.state.ledger_pg import PostgresLedger
from waguard.state.timeline_pg import PostgresTimelines

SECRET = 'EAAGcanary"quoted\\Secret+value=42'  # a quote and a backslash: escaped in any JSON text
OTHER = "xoxb-not-planted-anywhere-1234"
WAGUARD_TABLES = {"incident_timelines", "timeline_records", "intake_audit", "intake_incidents",
                  "intake_nonces", "registration_attempts", "registration_numbers"}
T0 = 1_764_000_000.0


def open_every_store(dsn: str) -> None:
    """Every PostgreSQL store, so each creates its tables; the ledger gets an (all-digit) attempt."""
    PostgresIntakeStore(dsn).close()
    PostgresLedger(dsn).reserve("5000000001", "deregister", T0)
    PostgresTimelines(dsn).close()
    PostgresAuditLog(dsn).close()


def scan(dsn: str) -> tuple[set[str], set[str]]:
    texts = list(database_texts(dsn, chunk=64))  # small chunks: a table spans several
    report = scan_texts(texts, [SECRET, OTHER])
    assert all(h.secret_ref.startswith("secret#0 ") for h in report.hits)
    return {where for where, _ in texts}, {h.where for h in report.hits}


def test_a_clean_database_has_no_hits_and_every_table_is_a_place(pg_dsn: str) -> None:
    open_every_store(pg_dsn)
    assert {n.split(".", 1)[1] for n in table_names(pg_dsn)} >= WAGUARD_TABLES
    places, hits = scan(pg_dsn)
    assert places == {f"postgres:{n}" for n in table_names(pg_dsn)}
    assert hits == set()


def test_a_secret_written_through_any_store_is_found_in_its_table(pg_dsn: str) -> None:
    open_every_store(pg_dsn)
    intake = PostgresIntakeStore(pg_dsn)
    intake.remember(f"nonce:{SECRET}", now=T0, ttl_s=60)
    intake.claim("base", "leaked_secret", now=T0, quiet_s=60,
                 build=lambda g: (f"INC-{g}", {"incident_id": f"INC-{g}", "alert": {"body": SECRET}}))
    intake.close()
    timelines = PostgresTimelines(pg_dsn)
    timelines.open("INC-1").append("notify", "done", f"pasted {SECRET}")
    timelines.open("INC-2").remember(slack_view={"note": SECRET})
    timelines.close()
    audit = PostgresAuditLog(pg_dsn)
    audit.write(at=T0, source="github", outcome="started", status=200, verification="ok", body_sha256=None,
                note=SECRET)
    audit.close()
    _, hits = scan(pg_dsn)
    assert hits == {f"postgres:public.{t}" for t in (
        "intake_nonces", "intake_incidents", "timeline_records", "incident_timelines", "intake_audit")}


def test_the_stack_scan_includes_the_shared_database_when_the_dsn_is_set(tmp_path: Path, pg_dsn: str) -> None:
    open_every_store(pg_dsn)
    PostgresTimelines(pg_dsn).open("INC-9").append("notify", "done", SECRET)
    home = tmp_path / "stack"
    (home / "prefect").mkdir(parents=True)
    (home / "prefect" / "prefect.db").write_bytes(b"SQLite format 3\x00")
    settings = Settings(stack={"home": home}, intake={"state_dir": home / "intake"},
                        evidence={"dir": home / "evidence"}, incidents_dir=home / "incidents",
                        meta={"ledger_path": home / "ledger.sqlite3"}, state={"dsn": pg_dsn}, _env_file=None)
    report = scan_texts(local_texts(settings, home / "prefect", overlap=max_form_len([SECRET])), [SECRET])
    assert {h.where for h in report.hits} == {"postgres:public.timeline_records"}
    without = settings.model_copy(update={"state": settings.state.model_copy(update={"dsn": ""})})
    assert scan_texts(local_texts(without, home / "prefect"), [SECRET]).clean  # the files alone miss it


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_world_reset_forgets_the_registration_ledger(backend: str, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else ""
    settings = Settings(meta={"ledger_path": tmp_path / "ledger.sqlite3"}, state={"dsn": dsn}, _env_file=None)
    ledger = open_ledger(settings)
    for i in range(3):
        ledger.reserve("5000000001", "deregister", T0 + i)
    assert ledger.remaining("5000000001", T0 + 10) == REGISTRATION_LIMIT - 3
    forget_ledger(settings)
    assert open_ledger(settings).remaining("5000000001", T0 + 10) == REGISTRATION_LIMIT
    assert open_ledger(settings).history("5000000001") == []


def test_a_behaviour_drill_sees_the_alert_whichever_replica_audited_it(pg_dsn: str) -> None:
    """The drill waits for the intake's audit record of its alert; with replicas that is the shared table."""
    from waguard.drills.behaviour import received_at

    fired = 1_800_000_100.0
    replicas = [PostgresAuditLog(pg_dsn) for _ in range(2)]
    replicas[0].write(at=fired - 60, source="alertmanager", outcome="started", status=200, verification="ok",
                      body_sha256=None, incident_key="alertmanager:WabaTwoStepResetRequested:aaaa")
    replicas[1].write(at=fired + 4, source="alertmanager", outcome="started", status=200, verification="ok",
                      body_sha256=None, incident_key="alertmanager:WabaTwoStepResetRequested:cccc")
    for r in replicas:
        r.close()
    reader = PostgresAuditLog(pg_dsn)
    assert received_at(reader, "WabaTwoStepResetRequested", fired) == pytest.approx(fired + 4, abs=0.01)
    assert received_at(reader, "WabaSendVolumeSpike", fired) is None
