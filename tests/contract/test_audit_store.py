"""The intake audit log's contract, run against both backends: the rotated files of one intake (one
machine) and the PostgreSQL table every intake replica writes (the scaled profile). What evidence
relies on: a record reads back as written, a time window returns exactly its records in time order.
The file log's rotation has its own tests (tests/unit/test_intake_audit.py); the shared-log tests
(two replicas, one log) are PostgreSQL's alone: each file intake keeps its own log."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from waguard.intake.audit import AuditLog, AuditReader, AuditWriter, FileAuditReader
from waguard.settings import IntakeSettings, Settings, StateSettings
from waguard.state.audit_pg import PostgresAuditLog
from waguard.state.backends import open_audit_log, open_audit_reader

T0 = 1_764_000_000.0


class Backend:
    def __init__(self, writer: Callable[[], AuditWriter], reader: Callable[[], AuditReader]) -> None:
        self.writer, self.reader = writer, reader


@pytest.fixture(params=["files", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened: list[AuditWriter] = []
    if request.param == "files":
        path = tmp_path / "audit.jsonl"

        def writer() -> AuditWriter:
            opened.append(AuditLog(path))
            return opened[-1]

        yield Backend(writer, lambda: FileAuditReader(path))
    else:
        dsn = request.getfixturevalue("pg_dsn")

        def pg_writer() -> AuditWriter:
            opened.append(PostgresAuditLog(dsn))
            return opened[-1]

        yield Backend(pg_writer, lambda: PostgresAuditLog(dsn))
    for w in opened:
        w.close()


def delivery(log: AuditWriter, at: float, delivery_id: str, **extra: object) -> None:
    log.write(at=at, source="github", outcome="started", status=200, verification="ok",
              body_sha256="ab" * 32, delivery_id=delivery_id, incident_key="INC-1", **extra)


def ids(lines: Iterator[bytes]) -> list[str]:
    return [json.loads(line)["delivery_id"] for line in lines]


def test_a_record_reads_back_as_written(backend: Backend) -> None:
    log = backend.writer()
    delivery(log, T0 + 0.25, "d-1", repeats=3, note=None, incidents=[])
    (line,) = list(backend.reader().read_window())
    assert line.endswith(b"\n")
    assert json.loads(line) == {
        "at": "2025-11-24T16:00:00.250Z", "source": "github", "delivery_id": "d-1", "outcome": "started",
        "status": 200, "verification": "ok", "body_sha256": "ab" * 32, "incident_key": "INC-1",
        "run_id": None, "repeats": 3}  # empty extras are not written


def test_a_window_returns_exactly_its_records_in_time_order(backend: Backend) -> None:
    log = backend.writer()
    for i in range(300):
        delivery(log, T0 + i, f"d-{i}")
    reader = backend.reader()
    assert reader.missing() is None
    assert ids(reader.read_window(T0 + 120, T0 + 125)) == [f"d-{i}" for i in range(120, 126)]
    assert ids(reader.read_window(T0 + 297)) == ["d-297", "d-298", "d-299"]
    assert ids(reader.read_window(None, T0 + 1)) == ["d-0", "d-1"]
    assert len(ids(reader.read_window())) == 300
    assert ids(reader.read_window(T0 + 400)) == []


def test_two_replicas_write_one_log(pg_dsn: str) -> None:
    replicas = [PostgresAuditLog(pg_dsn) for _ in range(2)]
    try:
        for i in range(10):  # alternate, as a load balancer would
            delivery(replicas[i % 2], T0 + i, f"d-{i}")
        assert ids(PostgresAuditLog(pg_dsn).read_window(T0 + 3, T0 + 6)) == ["d-3", "d-4", "d-5", "d-6"]
    finally:
        for r in replicas:
            r.close()


def test_racing_replicas_lose_no_record(pg_dsn: str) -> None:
    replicas, each = 4, 50
    logs = [PostgresAuditLog(pg_dsn) for _ in range(replicas)]
    barrier = threading.Barrier(replicas)
    errors: list[BaseException] = []

    def write(r: int) -> None:
        barrier.wait(timeout=30)
        try:
            for n in range(each):
                delivery(logs[r], T0 + n, f"r{r}-{n}")
        except BaseException as err:  # noqa: BLE001 - reported in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=write, args=(r,)) for r in range(replicas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for log in logs:
        log.close()
    assert not errors, errors
    got = ids(PostgresAuditLog(pg_dsn).read_window())
    assert sorted(got) == sorted(f"r{r}-{n}" for r in range(replicas) for n in range(each))
    stamps = [json.loads(line)["at"] for line in PostgresAuditLog(pg_dsn).read_window()]
    assert stamps == sorted(stamps)


def test_the_shared_log_keeps_its_newest_records(pg_dsn: str) -> None:
    log = PostgresAuditLog(pg_dsn, keep_records=5)
    try:
        for i in range(12):
            delivery(log, T0 + i, f"d-{i}")
        assert log.prune() == 7
        assert ids(log.read_window()) == [f"d-{i}" for i in range(7, 12)]
    finally:
        log.close()


def test_a_writer_carries_on_after_postgres_restarts(pg_dsn: str, postgres_server: object) -> None:
    log = PostgresAuditLog(pg_dsn)
    try:
        delivery(log, T0, "before")
        with psycopg.connect(pg_dsn, autocommit=True) as admin:  # cut the writer's session
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'waguard-audit'")
        delivery(log, T0 + 1, "after")
        assert ids(log.read_window()) == ["before", "after"]
    finally:
        log.close()


def test_the_dsn_setting_chooses_the_backend(tmp_path: Path, pg_dsn: str) -> None:
    intake = IntakeSettings(state_dir=tmp_path / "intake")
    files = Settings(intake=intake)
    assert isinstance(open_audit_log(files), AuditLog)
    assert "does not exist" in (open_audit_reader(Settings(intake=IntakeSettings(
        state_dir=tmp_path / "none"))).missing() or "")
    shared = Settings(intake=intake, state=StateSettings(dsn=pg_dsn))
    log = open_audit_log(shared)
    delivery(log, T0, "d-shared")
    log.close()
    assert ids(open_audit_reader(shared).read_window()) == ["d-shared"]
    assert ids(open_audit_reader(files).read_window()) == []  # nothing landed in the files
