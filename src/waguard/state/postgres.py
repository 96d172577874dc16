"""Connections to the shared-state database named by the `state.dsn` setting.

Failures at start are ConfigErrors naming the setting (the process refuses to start: a replica that
silently fell back to a file of its own would break every cross-replica promise). The URL is shown
without its query (a passfile path, TLS files); a password is refused by the setting itself.

A server that is away (restarting, failing over, not listening yet) is waited for, up to
`state.reconnect_s` (WAGUARD_STATE__RECONNECT_S): a run or replica that starts during a PostgreSQL
restart must not fail for it. A refusal that waiting cannot change (no such database, authentication)
fails at once. Only the intake's request path does not wait (its store reconnects on the next call
and the delivery is answered 5xx, retried by its sender): blocking the event loop would stall it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import psycopg

from waguard.errors import ConfigError, Retryable

SETTING = "WAGUARD_STATE__DSN"
CONNECT_TIMEOUT_S = 10
SCHEMA_LOCK = 0x5741_4755  # pg_advisory_xact_lock key: replicas starting together create the schema once
RECONNECT_S = 30.0  # default of state.reconnect_s: a restart or failover takes seconds
# SQLSTATE classes of a server that is away rather than refusing: connection exceptions (08) and
# 57P01-57P03 (admin/crash shutdown, cannot connect now: starting up, shutting down, in recovery).
AWAY_STATES = ("08", "57P01", "57P02", "57P03")
# What libpq says before any SQLSTATE exists (the connection attempt itself failed).
AWAY_TEXT = ("connection refused", "is starting up", "is shutting down", "in recovery mode",
             "closed the connection unexpectedly", "terminating connection", "timeout expired",
             "no such file or directory", "server conn crashed", "connection reset", "consuming input failed",
             "connection is lost", "connection is closed")
log = logging.getLogger("waguard.state")
T = TypeVar("T")


class StateStoreUnavailable(Retryable):
    """The shared-state database stayed unreachable for the whole reconnect bound; names the setting."""


def shown(dsn: str) -> str:
    """The DSN as it may appear in an error or a log line: scheme, user, host, port, database."""
    parts = urlsplit(dsn)
    host = parts.hostname or "(local socket)"
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def connect(dsn: str, *, role: str) -> psycopg.Connection:
    """An autocommit connection (explicit transactions only), named `waguard-<role>` in pg_stat_activity."""
    return psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                           application_name=f"waguard-{role}")


def server_away(err: BaseException) -> bool:
    """The server is restarting or unreachable (worth waiting for), not refusing us."""
    if not isinstance(err, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    state = getattr(err, "sqlstate", None) or ""
    return state.startswith(AWAY_STATES) or (not state and any(t in str(err).lower() for t in AWAY_TEXT))


def while_away(dsn: str, reconnect_s: float, attempt: Callable[[], T], *,
               sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> T:
    """`attempt()`, tried again while the server is away, for at most `reconnect_s`; then its error.
    `attempt` must be safe to repeat after a failure (one transaction, or a read)."""
    deadline, delay = clock() + reconnect_s, 0.25
    while True:
        try:
            return attempt()
        except psycopg.Error as err:
            if not server_away(err) or clock() + delay > deadline:
                raise
            log.warning("waiting for PostgreSQL at %s (%s): %s", shown(dsn), SETTING, _first_line(err))
        sleep(delay)
        delay = min(delay * 2, 2.0)


def unavailable(dsn: str, reconnect_s: float, err: psycopg.Error) -> StateStoreUnavailable:
    return StateStoreUnavailable(f"{SETTING}: {shown(dsn)} unreachable for {reconnect_s:g} s: "
                                 f"{_first_line(err)}")


def retried(dsn: str, reconnect_s: float, attempt: Callable[[], T]) -> T:
    """`while_away`, and StateStoreUnavailable (naming the setting) if the server stayed away."""
    try:
        return while_away(dsn, reconnect_s, attempt)
    except psycopg.Error as err:
        if server_away(err):
            raise unavailable(dsn, reconnect_s, err) from None
        raise


def open_checked(dsn: str, *, role: str, schema: str, reconnect_s: float = RECONNECT_S) -> psycopg.Connection:
    """Connect and create `schema` if missing (idempotent, serialised across replicas), waiting up to
    `reconnect_s` for a server that is away; a ConfigError naming the setting if it stays away or
    refuses."""

    def attempt() -> psycopg.Connection:
        conn = connect(dsn, role=role)
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                conn.execute(schema.encode())  # several statements: sent as one simple query
        except BaseException:
            conn.close()
            raise
        return conn

    try:
        return while_away(dsn, reconnect_s, attempt)
    except psycopg.Error as err:
        waited = f" (waited {reconnect_s:g} s)" if server_away(err) else ""
        raise ConfigError(f"{SETTING}: cannot open waguard's tables in {shown(dsn)}{waited}: "
                          f"{_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
