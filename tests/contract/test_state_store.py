"""The intake's store contract, run against every backend: SQLite (one machine) and PostgreSQL (shared
by intake replicas). Each "replica" below is a store of its own (its own connection) on the same file
or database; the racing tests run them in real threads against the real database, started together at
a barrier, and check what the database let through."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from waguard.errors import ConfigError
from waguard.intake.claims import Claim
from waguard.intake.store import IntakeStore
from waguard.settings import Settings, StateSettings
from waguard.state.backends import open_intake_store
from waguard.state.intake_pg import PostgresIntakeStore
from waguard.state.protocols import IntakeState

PB = "template_abuse"
Replica = Callable[[], IntakeState]


@pytest.fixture(params=["sqlite", "postgres"])
def replica(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Replica]:
    """Opens one more store on the shared backend (closed at the end of the test)."""
    opened: list[IntakeState] = []
    if request.param == "sqlite":
        def make() -> IntakeState:
            opened.append(IntakeStore(tmp_path / "intake.sqlite3"))
            return opened[-1]
    else:
        dsn = request.getfixturevalue("pg_dsn")

        def make() -> IntakeState:
            opened.append(PostgresIntakeStore(dsn))
            return opened[-1]
    yield make
    for s in opened:
        s.close()


# Several replicas at once: PostgreSQL only. A SQLite file has one intake, which answers from memory
# and holds the file's lock (test_a_second_intake_on_one_sqlite_file_is_refused_until_the_first_closes).
SHARED_ONLY = pytest.mark.parametrize("replica", ["postgres"], indirect=True)


@pytest.fixture
def store(replica: Replica) -> IntakeState:
    return replica()


def build(generation: int) -> tuple[str, dict[str, Any]]:
    return f"k:{generation}", {"incident_id": f"k:{generation}"}


def racing(replicas: list[IntakeState], work: Callable[[IntakeState], Any]) -> list[Any]:
    """Run `work` once per replica, each in its own thread, released together; return the results."""
    barrier = threading.Barrier(len(replicas))
    results: list[Any] = [None] * len(replicas)

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = work(replicas[i])
        except BaseException as err:  # noqa: BLE001 - reported below, in the test's thread
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(replicas))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return results


# -- one replica: the behaviour the intake relies on --------------------------------------------------


def test_nonce_is_new_once_then_a_replay_until_it_expires(store: IntakeState) -> None:
    assert store.remember("github:d-1", now=100, ttl_s=50)
    assert not store.remember("github:d-1", now=120, ttl_s=50)
    assert not store.remember("github:d-1", now=149, ttl_s=50)
    assert store.remember("github:d-1", now=150, ttl_s=50)  # expired: new again
    store.forget("github:d-1")
    assert store.remember("github:d-1", now=151, ttl_s=50)


def test_a_nonce_said_to_be_live_is_one(store: IntakeState) -> None:
    """`is_live` may say False for a live nonce (not known cheaply), never True for one that is not."""
    store.remember("n", now=0, ttl_s=10)
    assert not store.is_live("unknown", now=1) and not store.is_live("n", now=10)
    assert store.is_live("n", now=1) is isinstance(store, IntakeStore)  # SQLite: from memory
    assert not store.remember("n", now=1, ttl_s=10)


def test_prune_drops_only_expired(store: IntakeState) -> None:
    store.remember("a", now=0, ttl_s=10)
    store.remember("b", now=0, ttl_s=100)
    assert store.prune(now=50) == 1
    assert not store.remember("b", now=60, ttl_s=100)


def test_claim_opens_then_joins(store: IntakeState) -> None:
    first = store.claim("k", PB, now=0, quiet_s=100, build=build)
    again = store.claim("k", PB, now=50, quiet_s=100, build=build)
    other = store.claim("k", "leaked_secret", now=50, quiet_s=100, build=lambda g: (f"ls:{g}", {}))
    assert first.new and not again.new and other.new
    assert first.incident_id == again.incident_id == "k:1"
    assert first.parameters == {"incident_id": "k:1"}
    assert store.deliveries("k:1") == 2 and store.incident_count() == 2


def test_quiet_period_counts_from_the_last_delivery(store: IntakeState) -> None:
    store.claim("k", PB, now=0, quiet_s=100, build=build)
    assert not store.claim("k", PB, now=90, quiet_s=100, build=build).new
    assert not store.claim("k", PB, now=180, quiet_s=100, build=build).new
    later = store.claim("k", PB, now=281, quiet_s=100, build=build)
    assert later.new and later.generation == 2 and later.incident_id == "k:2"


def test_close_ends_the_incident(store: IntakeState) -> None:
    store.claim("k", PB, now=0, quiet_s=100, build=build)
    assert store.close_incidents("k", now=1) == ["k:1"]
    assert store.close_incidents("k", now=2) == []
    assert store.claim("k", PB, now=3, quiet_s=100, build=build).generation == 2


def test_pending_until_the_run_is_recorded(store: IntakeState) -> None:
    store.claim("k", PB, now=0, quiet_s=100, build=build)
    assert [p.incident_id for p in store.pending()] == ["k:1"]
    assert store.pending()[0].parameters == {"incident_id": "k:1"}
    assert store.open_run("k", PB) is None
    store.set_run("k:1", "run-1")
    assert store.pending() == [] and store.run_of("k:1") == "run-1"
    assert store.open_run("k", PB) == ("k:1", "run-1")
    assert store.claim("k", PB, now=1, quiet_s=100, build=build).run_id == "run-1"
    store.close_incident("k:1", now=2)
    assert store.open_run("k", PB) is None
    assert store.claim("k", PB, now=3, quiet_s=100, build=build).new


def test_a_failed_transaction_leaves_nothing_behind(store: IntakeState) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.remember("n", now=0, ttl_s=100)
        store.claim("k", PB, now=0, quiet_s=100, build=build)
        raise RuntimeError("boom")
    assert store.remember("n", now=1, ttl_s=100) and store.incident_count() == 0


def test_state_survives_a_restart(replica: Replica) -> None:
    a = replica()
    a.remember("meta:abc", now=0, ttl_s=1000)
    a.claim("k", PB, now=0, quiet_s=100, build=build)
    a.close()
    b = replica()
    assert not b.remember("meta:abc", now=1, ttl_s=1000)
    assert not b.claim("k", PB, now=1, quiet_s=100, build=build).new
    assert [p.incident_id for p in b.pending()] == ["k:1"]


@SHARED_ONLY
async def test_a_delivery_is_visible_to_another_replica_once_its_group_commit_returned(
        replica: Replica) -> None:
    a, b = replica(), replica()
    committed = a.group()
    with a.transaction():
        assert a.remember("alertmanager:n1", now=0, ttl_s=100)
        assert a.claim("k", PB, now=0, quiet_s=100, build=build).new
    await committed
    assert not b.remember("alertmanager:n1", now=1, ttl_s=100)
    assert not b.claim("k", PB, now=1, quiet_s=100, build=build).new


# -- several replicas on one backend ----------------------------------------------------------------


@SHARED_ONLY
def test_a_nonce_remembered_by_one_replica_is_refused_by_the_other(replica: Replica) -> None:
    a, b = replica(), replica()
    assert a.remember("meta:delivery-1", now=0, ttl_s=100)
    assert not b.remember("meta:delivery-1", now=1, ttl_s=100)
    assert b.remember("meta:delivery-2", now=1, ttl_s=100)
    assert not a.remember("meta:delivery-2", now=2, ttl_s=100)


@SHARED_ONLY
def test_racing_replicas_take_a_nonce_exactly_once(replica: Replica) -> None:
    replicas = [replica() for _ in range(4)]
    for n in range(20):
        won = racing(replicas, lambda s, n=n: s.remember(f"alertmanager:{n}", now=0, ttl_s=100))
        assert sorted(won) == [False, False, False, True], (n, won)


@SHARED_ONLY
def test_racing_replicas_open_exactly_one_incident_per_key(replica: Replica) -> None:
    """The alert storm on two intakes: every replica claims the same key at once, in a delivery's
    transaction (nonce of its own, then the claim); one opens it, the others join that incident."""
    replicas = [replica() for _ in range(4)]
    for n in range(20):
        def deliver(s: IntakeState, n: int = n) -> Claim:
            with s.transaction():
                s.remember(f"alertmanager:{n}:{id(s)}", now=n, ttl_s=100)
                return s.claim(f"group-{n}", PB, now=n, quiet_s=100,
                               build=lambda g, n=n: (f"inc-{n}:{g}", {"incident_id": f"inc-{n}:{g}"}))
        claims = racing(replicas, deliver)
        assert [c.new for c in claims].count(True) == 1, (n, claims)
        assert {c.incident_id for c in claims} == {f"inc-{n}:1"}
        assert replicas[0].deliveries(f"inc-{n}:1") == 4
    assert replicas[1].incident_count() == 20
    assert len(replicas[2].pending()) == 20


@SHARED_ONLY
def test_racing_replicas_open_one_next_generation_after_a_close(replica: Replica) -> None:
    a = replica()
    a.claim("k", PB, now=0, quiet_s=100, build=build)
    a.close_incidents("k", now=1)
    claims = racing([a, *(replica() for _ in range(3))],
                    lambda s: s.claim("k", PB, now=2, quiet_s=100, build=build))
    assert [c.new for c in claims].count(True) == 1
    assert {(c.incident_id, c.generation) for c in claims} == {("k:2", 2)}


@SHARED_ONLY
def test_an_incident_claimed_by_a_replica_that_died_is_started_by_another(replica: Replica) -> None:
    """Claimed, answered, then the replica is killed before the run started: the other one (or the
    restart) finds it pending; once a run is recorded no replica offers it again."""
    a, b = replica(), replica()
    a.claim("k", PB, now=0, quiet_s=100, build=build)
    a.close()  # gone before set_run
    assert [p.incident_id for p in b.pending()] == ["k:1"]
    b.set_run("k:1", "run-9")
    assert replica().pending() == []
    joined = replica().claim("k", PB, now=1, quiet_s=100, build=build)
    assert (joined.new, joined.run_id) == (False, "run-9")


@SHARED_ONLY
def test_a_stale_pending_start_is_taken_by_one_sweeping_replica_then_held(replica: Replica) -> None:
    """The live replicas' sweep: a start pending longer than `older_than_s` goes to exactly one of the
    replicas racing for it, which holds it for `hold_s`; after that another may take it again."""
    a = replica()
    for key in ("k1", "k2", "k3"):
        a.claim(key, PB, now=0, quiet_s=100, build=lambda g, key=key: (f"{key}:{g}", {"incident_id": key}))
    a.close()
    others = [replica() for _ in range(4)]
    assert others[0].take_stale_pending(now=4, older_than_s=5, hold_s=30) == []  # not stale yet
    taken = racing(others, lambda s: s.take_stale_pending(now=10, older_than_s=5, hold_s=30))
    ids = sorted(p.incident_id for batch in taken for p in batch)
    assert ids == ["k1:1", "k2:1", "k3:1"]
    assert others[0].take_stale_pending(now=39, older_than_s=5, hold_s=30) == []  # held
    others[0].set_run("k1:1", "run-1")
    assert sorted(p.incident_id for p in others[1].take_stale_pending(now=41, older_than_s=5, hold_s=30)) \
        == ["k2:1", "k3:1"]


@SHARED_ONLY
def test_a_close_by_one_replica_ends_the_incident_for_the_other(replica: Replica) -> None:  # open runs
    a, b = replica(), replica()
    a.claim("k", PB, now=0, quiet_s=100, build=build)
    a.set_run("k:1", "run-1")
    assert a.open_run("k", PB) == ("k:1", "run-1")
    assert b.close_incidents("k", now=1) == ["k:1"]
    assert a.open_run("k", PB) is None
    assert a.claim("k", PB, now=2, quiet_s=100, build=build).incident_id == "k:2"


def test_a_replica_carries_on_after_postgres_restarts(pg_dsn: str, postgres_server: Any) -> None:
    """The call under way when the server went away fails (its delivery is answered 5xx and retried
    by the sender); the next one reconnects, and nothing committed was lost."""
    s = PostgresIntakeStore(pg_dsn)
    try:
        s.remember("am:before", now=0, ttl_s=100)
        s.claim("k", PB, now=0, quiet_s=100, build=build)
        postgres_server.restart()
        try:
            s.remember("am:after", now=1, ttl_s=100)
        except psycopg.OperationalError:
            assert s.remember("am:after", now=1, ttl_s=100)
        assert not s.remember("am:before", now=2, ttl_s=100)
        assert not s.claim("k", PB, now=2, quiet_s=100, build=build).new
        with s.transaction():  # what the readiness probe does
            pass
    finally:
        s.close()


# -- choosing the backend -----------------------------------------------------------------------------


def test_the_dsn_setting_chooses_the_backend(tmp_path: Path, pg_dsn: str) -> None:
    sqlite = open_intake_store(Settings(intake={"state_dir": tmp_path}))  # type: ignore[arg-type]
    assert isinstance(sqlite, IntakeStore) and (tmp_path / "intake.sqlite3").is_file()
    sqlite.close()
    pg = open_intake_store(Settings(intake={"state_dir": tmp_path / "unused"},  # type: ignore[arg-type]
                                    state=StateSettings(dsn=pg_dsn)))
    assert isinstance(pg, PostgresIntakeStore) and not (tmp_path / "unused").exists()
    pg.close()


def test_an_unreachable_database_fails_at_start_naming_the_setting(pg_dsn: str) -> None:
    missing_db = pg_dsn.rsplit("/", 1)[0] + "/no_such_database"
    for dsn in ("postgresql://waguard@127.0.0.1:1/waguard", missing_db):
        with pytest.raises(ConfigError, match="WAGUARD_STATE__DSN") as caught:
            open_intake_store(Settings(state=StateSettings(dsn=dsn, reconnect_s=0.5)))
        assert "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(("dsn", "says"), [
    ("sqlite:///tmp/x.db", "postgresql://"),
    ("postgresql://waguard:hunter2@db/waguard", "passfile"),
])
def test_a_malformed_dsn_is_refused_without_echoing_it(dsn: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        StateSettings(dsn=dsn)
    assert "hunter2" not in str(caught.value).split("input_value")[0]
