"""The incident-timeline store contract, run against both backends: files under incidents_dir (one
machine) and PostgreSQL (shared by every launcher). Each "writer" below is a store of its own (its own
connection, or its own file handles) on the same directory or database; the racing tests run them in
real threads, released together at a barrier, and check the chain the store kept."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from waguard.playbook.timeline import FileTimelines, TimelineBroken, TimelineStore
from waguard.settings import Settings, StateSettings
from waguard.state.backends import open_timelines
from waguard.state.timeline_pg import PostgresTimelines

INC = "INC-2026:0001"  # a ':' (stored as '_' in a file name)
Tamper = Callable[[str, int, str, str], None]  # incident, seq, field, new value


class Backend:
    def __init__(self, kind: str, make: Callable[[], TimelineStore], tamper: Tamper) -> None:
        self.kind, self.make, self.tamper = kind, make, tamper


@pytest.fixture(params=["files", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "files":
        root = tmp_path / "incidents"

        def tamper_file(incident_id: str, seq: int, field: str, value: str) -> None:
            path = root / incident_id.replace(":", "_") / "timeline.jsonl"
            records = [json.loads(line) for line in path.read_text().splitlines()]
            records[seq][field] = value
            path.write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n"
                                    for r in records))

        yield Backend("files", lambda: FileTimelines(root), tamper_file)
        return
    dsn = request.getfixturevalue("pg_dsn")
    opened: list[PostgresTimelines] = []

    def make() -> TimelineStore:
        opened.append(PostgresTimelines(dsn))
        return opened[-1]

    def tamper_row(incident_id: str, seq: int, field: str, value: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:  # the table's owner can get past the trigger
            row = conn.execute("SELECT record FROM timeline_records WHERE incident_id = %s AND seq = %s",
                               (incident_id, seq)).fetchone()
            assert row is not None
            record = {**json.loads(row[0]), field: value}
            conn.execute("ALTER TABLE timeline_records DISABLE TRIGGER timeline_records_append_only")
            conn.execute("UPDATE timeline_records SET record = %s WHERE incident_id = %s AND seq = %s",
                         (json.dumps(record, sort_keys=True, separators=(",", ":")), incident_id, seq))
            conn.execute("ALTER TABLE timeline_records ENABLE TRIGGER timeline_records_append_only")

    yield Backend("postgres", make, tamper_row)
    for s in opened:
        s.close()


def three_steps(store: TimelineStore) -> None:
    inc = store.open(INC)
    inc.append("snapshot", "done", target="waba:3000000001")
    inc.append("approval", "decided", actor="U0ONCALL", data={"verdict": "approved", "n": [1, 2]})
    inc.append("deregister", "done", target="pn:5000000001")


def racing(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` for i in range(n), each in its own thread, released together; return the results."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = work(i)
        except BaseException as err:  # noqa: BLE001 - reported below, in the test's thread
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return results


def test_records_chain_and_another_writer_reads_them(backend: Backend) -> None:
    three_steps(backend.make())
    again = backend.make().open(INC)
    again.verify()
    events = again.events()
    assert [(e.seq, e.step) for e in events] == [(0, "snapshot"), (1, "approval"), (2, "deregister")]
    assert events[1].data == {"verdict": "approved", "n": [1, 2]} and events[1].actor == "U0ONCALL"
    assert [r["prev"] for r in again.raw()[1:]] == [e.digest() for e in events[:-1]]
    assert again.last("deregister", "done", target="pn:5000000001") is not None
    assert again.last("deregister", "done", target="pn:other") is None
    assert again.last("approval").seq == 1  # type: ignore[union-attr]


def test_open_creates_nothing_until_the_first_record(backend: Backend) -> None:
    store = backend.make()
    inc = store.open("INC-EMPTY")
    assert (inc.exists(), inc.events(), inc.state(), store.ids()) == (False, [], {}, [])
    inc.verify()  # an empty timeline is a valid one
    inc.append("open", "started")
    assert inc.exists() and len(backend.make().ids()) == 1


def test_state_merges_key_by_key_across_writers(backend: Backend) -> None:
    backend.make().open(INC).remember(slack_ts="1.0001", channel="C1")
    assert backend.make().open(INC).remember(started_at="2026-11-24T00:00:00Z", channel="C2") == {
        "slack_ts": "1.0001", "channel": "C2", "started_at": "2026-11-24T00:00:00Z"}
    assert backend.make().open(INC).state()["channel"] == "C2"
    assert backend.make().open(INC).events() == []  # state alone is not a timeline


@pytest.mark.parametrize("bad", ["", "a", "../etc", "x" * 200, "inc id"])
def test_malformed_incident_ids_are_refused(backend: Backend, bad: str) -> None:
    with pytest.raises(ValueError):
        backend.make().open(bad)


@pytest.mark.parametrize("seq, field", [(1, "actor"), (0, "detail")])
def test_a_rewritten_record_fails_verification_naming_the_record_after_it(
    backend: Backend, seq: int, field: str
) -> None:
    three_steps(backend.make())
    backend.tamper(INC, seq, field, "U0ATTACKER")
    with pytest.raises(TimelineBroken, match=rf"timeline record {seq + 1} \(seq {seq + 1}\) does not chain "
                                             rf"to record {seq}"):
        backend.make().open(INC).verify()


def test_racing_writers_extend_one_unbroken_chain(backend: Backend) -> None:
    writers, each = 4, 15
    stores = [backend.make() for _ in range(writers)]

    def write(i: int) -> None:
        inc = stores[i].open(INC)
        for n in range(each):
            inc.append("step", "done", target=f"w{i}:{n}")

    racing(writers, write)
    reader = backend.make().open(INC)
    reader.verify()
    events = reader.events()
    assert [e.seq for e in events] == list(range(writers * each))
    for i in range(writers):  # every writer's records, each once and in its own order
        assert [e.target for e in events if e.target.startswith(f"w{i}:")] == [  # type: ignore[union-attr]
            f"w{i}:{n}" for n in range(each)]


def test_racing_writers_each_keep_their_state_keys(backend: Backend) -> None:
    writers = 6
    stores = [backend.make() for _ in range(writers)]
    racing(writers, lambda i: stores[i].open(INC).remember(**{f"k{i}": i}))
    assert backend.make().open(INC).state() == {f"k{i}": i for i in range(writers)}


def test_postgres_timeline_rows_cannot_be_changed_or_removed(pg_dsn: str) -> None:
    store = PostgresTimelines(pg_dsn)
    try:
        three_steps(store)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            for sql in ("UPDATE timeline_records SET record = '{}' WHERE seq = 1",
                        "DELETE FROM timeline_records WHERE seq = 2"):
                with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                    conn.execute(sql.encode())
        store.open(INC).verify()
        assert len(store.open(INC).events()) == 3
    finally:
        store.close()


def test_the_dsn_setting_chooses_the_backend(tmp_path: Path, pg_dsn: str) -> None:
    files = Settings(incidents_dir=tmp_path / "incidents")
    assert isinstance(open_timelines(files), FileTimelines)
    shared = Settings(incidents_dir=tmp_path / "incidents", state=StateSettings(dsn=pg_dsn))
    three_steps(open_timelines(shared))
    assert open_timelines(shared) is open_timelines(shared)  # one store (connection) per process
    assert open_timelines(files).ids() == []  # nothing landed in the files
    assert [e.step for e in PostgresTimelines(pg_dsn).open(INC).events()] == [
        "snapshot", "approval", "deregister"]


def test_a_postgres_timeline_carries_on_after_its_session_is_cut(pg_dsn: str) -> None:
    store = PostgresTimelines(pg_dsn, reconnect_s=5)
    try:
        store.open(INC).append("open", "started")
        with psycopg.connect(pg_dsn, autocommit=True) as admin:  # as a PostgreSQL restart would
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'waguard-timelines'")
        store.open(INC).append("notify", "done")
        store.open(INC).verify()
        assert [e.step for e in store.open(INC).events()] == ["open", "notify"]
    finally:
        store.close()
