"""The intake's SQLite memory: nonce TTLs, one incident per key, generations, atomic transactions,
and that all of it survives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from waguard.intake.store import IntakeStore


@pytest.fixture
def store(tmp_path: Path):
    s = IntakeStore(tmp_path / "intake.sqlite3")
    yield s
    s.close()


def build(generation: int) -> tuple[str, dict]:
    return f"k:{generation}", {"incident_id": f"k:{generation}"}


def test_nonce_is_new_once_then_a_replay_until_it_expires(store: IntakeStore) -> None:
    assert store.remember("github:d-1", now=100, ttl_s=50)
    assert not store.remember("github:d-1", now=120, ttl_s=50)
    assert not store.remember("github:d-1", now=149, ttl_s=50)
    assert store.remember("github:d-1", now=150, ttl_s=50)  # expired: new again
    store.forget("github:d-1")
    assert store.remember("github:d-1", now=151, ttl_s=50)


def test_prune_drops_only_expired(store: IntakeStore) -> None:
    store.remember("a", now=0, ttl_s=10)
    store.remember("b", now=0, ttl_s=100)
    assert store.prune(now=50) == 1
    assert not store.remember("b", now=60, ttl_s=100)


def test_claim_opens_then_joins(store: IntakeStore) -> None:
    first = store.claim("k", "template_abuse", now=0, quiet_s=100, build=build)
    again = store.claim("k", "template_abuse", now=50, quiet_s=100, build=build)
    other = store.claim("k", "leaked_secret", now=50, quiet_s=100, build=lambda g: (f"ls:{g}", {}))
    assert first.new and not again.new and other.new
    assert first.incident_id == again.incident_id == "k:1"
    assert store.deliveries("k:1") == 2 and store.incident_count() == 2


def test_quiet_period_counts_from_the_last_delivery(store: IntakeStore) -> None:
    store.claim("k", "template_abuse", now=0, quiet_s=100, build=build)
    assert not store.claim("k", "template_abuse", now=90, quiet_s=100, build=build).new
    assert not store.claim("k", "template_abuse", now=180, quiet_s=100, build=build).new
    later = store.claim("k", "template_abuse", now=281, quiet_s=100, build=build)
    assert later.new and later.generation == 2 and later.incident_id == "k:2"


def test_close_ends_the_incident(store: IntakeStore) -> None:
    store.claim("k", "template_abuse", now=0, quiet_s=100, build=build)
    assert store.close_incidents("k", now=1) == ["k:1"]
    assert store.close_incidents("k", now=2) == []
    assert store.claim("k", "template_abuse", now=3, quiet_s=100, build=build).generation == 2


def test_pending_until_the_run_is_recorded(store: IntakeStore) -> None:
    store.claim("k", "template_abuse", now=0, quiet_s=100, build=build)
    assert [p.incident_id for p in store.pending()] == ["k:1"]
    store.set_run("k:1", "run-1")
    assert store.pending() == [] and store.run_of("k:1") == "run-1"
    assert store.claim("k", "template_abuse", now=1, quiet_s=100, build=build).run_id == "run-1"


def test_a_failed_transaction_leaves_nothing_behind(store: IntakeStore) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.remember("n", now=0, ttl_s=100)
        store.claim("k", "template_abuse", now=0, quiet_s=100, build=build)
        raise RuntimeError("boom")
    assert store.remember("n", now=1, ttl_s=100) and store.incident_count() == 0


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    a = IntakeStore(path)
    a.remember("meta:abc", now=0, ttl_s=1000)
    a.claim("k", "template_abuse", now=0, quiet_s=100, build=build)
    a.close()
    b = IntakeStore(path)
    assert not b.remember("meta:abc", now=1, ttl_s=1000)
    assert not b.claim("k", "template_abuse", now=1, quiet_s=100, build=build).new
    assert [p.incident_id for p in b.pending()] == ["k:1"]
    b.close()
