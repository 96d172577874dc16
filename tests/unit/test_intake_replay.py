"""What only the SQLite store has: one intake per file (a lock), a memory of nonces and joins that is
the file's, read back at open, and files written before the nonce log. The behaviour both stores
share is the contract suite's (tests/contract/test_state_store.py)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from waguard.errors import ConfigError
from waguard.intake.store import IntakeStore

PB = "template_abuse"


def build(generation: int) -> tuple[str, dict]:
    return f"k:{generation}", {"incident_id": f"k:{generation}"}


def test_a_second_intake_on_one_sqlite_file_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = tmp_path / "intake.sqlite3"
    first = IntakeStore(path)
    with pytest.raises(ConfigError, match="WAGUARD_INTAKE__STATE_DIR") as refused:
        IntakeStore(path)
    assert "WAGUARD_STATE__DSN" in str(refused.value)  # where replicas go instead
    first.remember("n", now=0, ttl_s=100)
    first.close()
    again = IntakeStore(path)  # a restart
    try:
        assert not again.remember("n", now=1, ttl_s=100)
    finally:
        again.close()


def test_nonces_remembered_forgotten_and_expired_read_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "intake.sqlite3"
    a = IntakeStore(path)
    a.remember("kept", now=0, ttl_s=1000)
    a.remember("forgotten", now=0, ttl_s=1000)
    a.forget("forgotten")
    a.remember("short", now=0, ttl_s=10)
    a.remember("again", now=0, ttl_s=10)
    a.remember("again", now=20, ttl_s=1000)  # expired, then remembered anew
    a.close()
    b = IntakeStore(path)
    try:
        assert not b.remember("kept", now=30, ttl_s=1000)
        assert not b.remember("again", now=30, ttl_s=1000)
        assert b.remember("forgotten", now=30, ttl_s=1000)
        assert b.remember("short", now=30, ttl_s=1000)
    finally:
        b.close()


def test_pruned_nonces_leave_the_file_too(tmp_path: Path) -> None:
    path = tmp_path / "intake.sqlite3"
    a = IntakeStore(path)
    a.remember("old", now=0, ttl_s=10)
    a.remember("new", now=0, ttl_s=100)
    assert a.prune(now=50) == 1
    a.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert [r[0] for r in db.execute("SELECT key FROM nonce_log")] == ["new"]


def test_joins_answered_from_memory_are_written_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "intake.sqlite3"
    a = IntakeStore(path)
    a.claim("k", PB, now=0, quiet_s=100, build=build)
    for t in (50, 90, 70):  # out of order: the latest delivery counts
        assert not a.claim("k", PB, now=t, quiet_s=100, build=build).new
    a.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT last_seen, deliveries FROM incidents").fetchall() == [(90.0, 4)]
    b = IntakeStore(path)
    try:
        assert not b.claim("k", PB, now=185, quiet_s=100, build=build).new  # quiet since 90, not 0
    finally:
        b.close()


def test_a_file_written_before_the_nonce_log_keeps_its_nonces(tmp_path: Path) -> None:
    path = tmp_path / "intake.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript("CREATE TABLE nonces (key TEXT PRIMARY KEY, expires REAL NOT NULL) WITHOUT ROWID;"
                         "INSERT INTO nonces VALUES ('github:old', 1000.0);")
    store = IntakeStore(path)
    try:
        assert not store.remember("github:old", now=1, ttl_s=100)
        assert store.remember("github:new", now=1, ttl_s=100)
    finally:
        store.close()


async def test_a_group_whose_commit_fails_answers_none_and_remembers_nothing(tmp_path: Path) -> None:
    """The disk refuses the group's writes (here: a trigger): every delivery of the group gets the
    error, and their nonces and joins are not taken for replays when the senders retry."""
    path = tmp_path / "intake.sqlite3"
    store = IntakeStore(path)
    try:
        store.claim("k", PB, now=0, quiet_s=100, build=build)
        store._db.execute("CREATE TRIGGER refuse BEFORE INSERT ON nonce_log WHEN NEW.key = 'poison' "
                          "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
        committed = store.group()
        for key in ("fine", "poison"):
            with store.transaction():
                assert store.remember(key, now=1, ttl_s=100)
                assert not store.claim("k", PB, now=1, quiet_s=100, build=build).new
        with pytest.raises(sqlite3.IntegrityError, match="disk says no"):
            await committed
        assert store.deliveries("k:1") == 1
        store._db.execute("DROP TRIGGER refuse")
        assert store.remember("fine", now=2, ttl_s=100) and store.remember("poison", now=2, ttl_s=100)
    finally:
        store.close()


async def test_a_unit_undone_after_its_own_sql_takes_no_other_delivery_s_writes(tmp_path: Path) -> None:
    """A delivery's own SQL (here a prune, then opening an incident) runs in its savepoint; the
    writes of the group's earlier deliveries must not be inside it when it is rolled back."""
    path = tmp_path / "intake.sqlite3"
    store = IntakeStore(path)
    try:
        committed = store.group()
        with store.transaction():
            assert store.remember("earlier", now=1, ttl_s=100)
        with pytest.raises(RuntimeError), store.transaction():
            store.prune(now=1)
            store.claim("k", PB, now=1, quiet_s=100, build=build)
            raise RuntimeError("refused")
        await committed
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert [r[0] for r in db.execute("SELECT key FROM nonce_log")] == ["earlier"]
        assert db.execute("SELECT count(*) FROM incidents").fetchone() == (0,)


async def test_a_join_read_from_the_file_sees_the_joins_of_its_group(tmp_path: Path) -> None:
    """Within one group: a join answered from memory, then something that empties the memory (a new
    incident), then a join read from the file: it must see the first join's last_seen."""
    store = IntakeStore(tmp_path / "intake.sqlite3")
    try:
        store.claim("k", PB, now=0, quiet_s=100, build=build)
        committed = store.group()
        with store.transaction():
            assert not store.claim("k", PB, now=90, quiet_s=100, build=build).new  # from memory
        with store.transaction():
            assert store.claim("other", PB, now=90, quiet_s=100, build=lambda g: (f"o:{g}", {})).new
        with store.transaction():
            assert not store.claim("k", PB, now=185, quiet_s=100, build=build).new  # quiet since 90
        await committed
        assert store.deliveries("k:1") == 3
    finally:
        store.close()


def test_nonces_past_the_memory_bound_move_to_the_table_and_stay_replays(tmp_path: Path) -> None:
    """A busy intake keeps the newest nonces in memory; older ones go to the keyed table, where they
    are still found: a replay of any of them is refused, before and after a restart."""
    path = tmp_path / "intake.sqlite3"
    store = IntakeStore(path, nonces_in_memory=3)
    try:
        for n in range(10):
            assert store.remember(f"n{n}", now=0, ttl_s=100)
        assert not any(store.remember(f"n{n}", now=1, ttl_s=100) for n in range(10))
        store.forget("n0")  # one that moved to the table
        assert store.remember("n0", now=1, ttl_s=100)
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM nonce_log WHERE live = 1").fetchone()[0] <= 4
        assert db.execute("SELECT count(*) FROM nonces").fetchone()[0] >= 6
    again = IntakeStore(path, nonces_in_memory=3)
    try:
        assert not any(again.remember(f"n{n}", now=2, ttl_s=100) for n in range(10))
        assert again.prune(now=150) == 10  # every nonce, wherever it was
        assert all(again.remember(f"n{n}", now=151, ttl_s=100) for n in range(10))
    finally:
        again.close()


async def test_a_group_commit_moves_what_its_deliveries_pushed_past_the_memory_bound(tmp_path: Path) -> None:
    path = tmp_path / "intake.sqlite3"
    store = IntakeStore(path, nonces_in_memory=2)
    try:
        committed = store.group()
        for n in range(5):
            with store.transaction():
                assert store.remember(f"g{n}", now=0, ttl_s=100)
        await committed
        assert not any(store.remember(f"g{n}", now=1, ttl_s=100) for n in range(5))
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert sorted(r[0] for r in db.execute("SELECT key FROM nonces")) == ["g0", "g1", "g2"]
        assert sorted(r[0] for r in db.execute("SELECT key FROM nonce_log")) == ["g3", "g4"]


def test_memory_stays_bounded_however_many_nonces_spill(tmp_path: Path) -> None:
    import tracemalloc

    store = IntakeStore(tmp_path / "intake.sqlite3", nonces_in_memory=100)
    try:
        store.remember("warm", now=0, ttl_s=10**6)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(10_000):  # over 2 MB of keys and expiries if anything kept them all
            store.remember(f"meta:{n:064d}", now=0, ttl_s=10**6)
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert grown < 700_000, grown
        assert not store.remember("meta:" + "0" * 64, now=1, ttl_s=10**6)  # spilled, still a replay
    finally:
        store.close()
