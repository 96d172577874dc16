"""waguard's PostgreSQL state store while the server restarts (the scaled profile's `postgres-restarted`
fault): a run or replica that opens the store, or reserves registration budget, during the restart
waits for the server (bounded by `state.reconnect_s`) instead of failing; once the bound is spent it
fails with an error naming WAGUARD_STATE__DSN. Each test stops the session's throwaway server, waits
until the store has been refused at least once (its warning), then starts the server again."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from waguard.errors import ConfigError, Retryable
from waguard.settings import Settings, StateSettings
from waguard.state.backends import open_intake_store, open_ledger
from waguard.state.intake_pg import PostgresIntakeStore
from waguard.state.ledger_pg import PostgresLedger
from waguard.state.postgres import StateStoreUnavailable

PN = "106853218861309"
T0 = 1_700_000_000.0


def during_outage(server: Any, caplog: pytest.LogCaptureFixture, work: Callable[[], Any]) -> Any:
    """Stop the server, run `work` in a thread, start the server again once `work` has been refused
    (or has ended); return what `work` returned, or raise what it raised."""
    caplog.set_level(logging.WARNING, logger="waguard.state")
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = work()
        except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = err

    server.stop()
    thread = threading.Thread(target=run)
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while thread.is_alive() and "waiting for PostgreSQL" not in caplog.text:
            assert time.monotonic() < deadline, "the store neither waited nor gave up"
            time.sleep(0.05)
    finally:
        server.start_again()
        thread.join(60)
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_store_opened_while_postgres_restarts_waits_for_it(
        pg_dsn: str, postgres_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    store = during_outage(postgres_server, caplog, lambda: open_intake_store(
        Settings(state=StateSettings(dsn=pg_dsn))))
    try:
        assert store.remember("am:after-restart", now=0, ttl_s=100)
    finally:
        store.close()


def test_a_ledger_opened_while_postgres_restarts_waits_for_it(
        pg_dsn: str, postgres_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(state=StateSettings(dsn=pg_dsn))
    ledger = during_outage(postgres_server, caplog, lambda: open_ledger(settings))
    assert ledger.reserve(PN, "deregister", T0) == 9


def test_a_reservation_made_while_postgres_restarts_is_recorded_once_it_is_back(
        pg_dsn: str, postgres_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    ledger = PostgresLedger(pg_dsn)
    assert during_outage(postgres_server, caplog, lambda: ledger.reserve(PN, "deregister", T0)) == 9
    assert [e.action for e in ledger.history(PN)] == ["deregister"]


def test_a_ledger_gives_up_after_its_bound_naming_the_setting(pg_dsn: str, postgres_server: Any) -> None:
    ledger = PostgresLedger(pg_dsn, reconnect_s=0.5)
    postgres_server.stop()
    try:
        with pytest.raises(StateStoreUnavailable, match="WAGUARD_STATE__DSN") as caught:
            ledger.reserve(PN, "deregister", T0)
    finally:
        postgres_server.start_again()
    assert isinstance(caught.value, Retryable)  # a task's only_retryable condition may try again later
    assert "127.0.0.1" in str(caught.value)
    assert ledger.history(PN) == []


def test_an_unreachable_server_fails_the_open_after_its_bound_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="WAGUARD_STATE__DSN") as caught:
        PostgresIntakeStore("postgresql://waguard@127.0.0.1:1/waguard", reconnect_s=0.5)
    assert "0.5 s" in str(caught.value)


def test_a_missing_database_fails_at_once(pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    """Waiting does not make a database appear: only a server that is away is waited for."""
    caplog.set_level(logging.WARNING, logger="waguard.state")
    with pytest.raises(ConfigError, match="WAGUARD_STATE__DSN"):
        PostgresLedger(pg_dsn.rsplit("/", 1)[0] + "/no_such_database", reconnect_s=600)
    assert "waiting for PostgreSQL" not in caplog.text
