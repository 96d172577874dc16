"""Connections to the shared-state database named by the `state.dsn` setting.

Failures at start are ConfigErrors naming the setting (the process refuses to start: a replica that
silently fell back to a file of its own would break every cross-replica promise). The URL is shown
without its query (a passfile path, TLS files); a password is refused by the setting itself.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg

from waguard.errors import ConfigError

SETTING = "WAGUARD_STATE__DSN"
CONNECT_TIMEOUT_S = 10
SCHEMA_LOCK = 0x5741_4755  # pg_advisory_xact_lock key: replicas starting together create the schema once


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


def open_checked(dsn: str, *, role: str, schema: str) -> psycopg.Connection:
    """Connect and create `schema` if missing (idempotent, serialised across replicas); a ConfigError
    naming the setting if the database cannot be reached or refuses."""
    try:
        conn = connect(dsn, role=role)
    except psycopg.Error as err:
        raise ConfigError(f"{SETTING}: cannot connect to {shown(dsn)}: {_first_line(err)}") from None
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            conn.execute(schema.encode())  # several statements: sent as one simple query
    except psycopg.Error as err:
        conn.close()
        raise ConfigError(f"{SETTING}: cannot create waguard's tables in {shown(dsn)}: "
                          f"{_first_line(err)}") from None
    return conn


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
