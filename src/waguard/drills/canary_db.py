"""The canary scan's look into the shared-state database (`state.dsn`, the scaled profile): every row
of every table in it, whichever store created the table (intake claims and nonces, the audit log,
timelines and their state, the registration ledger, and any added later), so a new table cannot be
missed by a list kept here.

A row is scanned as its column values, each as the store holds it: text as is, JSON (a JSON column,
or text that parses as JSON: records, parameters) as its text and as every string inside it (a secret
with a quote is escaped in the JSON text), bytes as latin-1. Rows
are streamed through a server-side cursor and handed on in chunks of whole rows, so memory stays
bounded and no value is split between chunks. Places are named `postgres:<schema>.<table>`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from psycopg import sql

from waguard.state.postgres import connect

CHUNK = 4 * 1024 * 1024  # characters handed on at a time (whole rows)
PAGE = 2000

TABLES = """
SELECT table_schema, table_name FROM information_schema.tables
WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2
"""


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, bytes | bytearray | memoryview):
        yield bytes(value).decode("latin-1")
    elif value is not None:
        yield str(value)


def _forms(value: Any) -> Iterator[str]:
    if isinstance(value, dict | list):
        yield json.dumps(value, ensure_ascii=False)
    yield from _strings(value)
    if isinstance(value, str) and value[:1] in ("{", "["):  # JSON kept as text (records, parameters)
        try:
            yield from _strings(json.loads(value))
        except ValueError:
            pass


def database_texts(dsn: str, *, chunk: int = CHUNK) -> Iterator[tuple[str, str]]:
    """`(postgres:<schema>.<table>, text)` for every table of the database, rows in whole chunks (an
    empty table is still one place, with no text).

    Raises:
        psycopg.Error: the database cannot be read (a scan that cannot look proves nothing).
    """
    with connect(dsn, role="canary") as conn:
        tables = conn.execute(TABLES).fetchall()
        for schema, table in tables:
            where = f"postgres:{schema}.{table}"
            with conn.transaction():
                cur = conn.cursor(name="canary_rows")
                cur.itersize = PAGE
                cur.execute(sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema),
                                                                   sql.Identifier(table)))
                parts: list[str] = []
                size, sent = 0, False
                for row in cur:
                    text = "\n".join(form for value in row for form in _forms(value))
                    parts.append(text)
                    size += len(text)
                    if size >= chunk:
                        yield where, "\n".join(parts)
                        parts, size, sent = [], 0, True
                if parts or not sent:
                    yield where, "\n".join(parts)
                cur.close()


def table_names(dsn: str) -> list[str]:
    """`<schema>.<table>` of every table the scan reads (for tests and the report)."""
    with connect(dsn, role="canary") as conn:
        return [f"{s}.{t}" for s, t in conn.execute(TABLES).fetchall()]


