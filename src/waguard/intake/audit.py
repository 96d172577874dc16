"""The intake's audit log: JSON lines in `<state_dir>/audit.jsonl`, rotated by size.

Fields (the evidence bundles read them): `at` (ISO-8601 UTC), `source`, `delivery_id`, `outcome`,
`verification`, `body_sha256`, `incident_key`, `run_id`, plus `status` (the HTTP answer) and, where
useful, `incidents`, `note`, `client` and `repeats`. Never a secret, a message body or a clear phone
number: the body is represented by its hash, ids come from headers checked against a narrow pattern,
notes are fixed text.

Every accepted delivery gets its own record. Refused requests are sampled (`RejectionSampler`): the
first of each kind (source, client, status, reason) in a period is written at once, the others of
that kind are counted and the count is written as `repeats` in the kind's next record, or in a
summary record (`outcome: "repeats"`) when the period ends. So a flood costs one line per kind per
period instead of one per request, and no kind goes unrecorded.

When `audit.jsonl` would pass `max_bytes` it becomes `audit.jsonl.1` (older ones shift up to
`.<backups>`, the oldest is dropped). Records are appended in time order, so a reader that wants one
time window (`read_window`) skips whole files that ended before it and stops at the first record
after it.

Several intake replicas share one log through the PostgreSQL writer and reader
(waguard.state.audit_pg, chosen by `state.dsn` in waguard.state.backends); both implement
`AuditWriter` and `AuditReader` below, with the same records and the same window semantics.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from waguard.intake.strict_json import compact_encoder

_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_AT = re.compile(rb'^\{\s*"at"\s*:\s*"([^"]+)"')


def safe_id(value: str | None) -> str | None:
    """A header-supplied id as it may be logged: kept if it is short and plain, else dropped."""
    return value if value is not None and _SAFE_ID.fullmatch(value) else None


def stamp(at: float) -> str:
    """Unix seconds as the audit's ISO-8601 UTC text (millisecond precision, sortable as text)."""
    secs = int(at)
    return _second(secs) + f".{int((at - secs) * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _second(secs: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))  # records come many to a second


_encode = compact_encoder(ensure_ascii=True, allow_nan=True)  # built once, not per record
_text = json.encoder.encode_basestring_ascii  # a str as its JSON text, what _encode writes for it


def _json(value: Any) -> str:
    if value is None:
        return "null"
    return _text(value) if type(value) is str else _encode(value)


def encode_record(*, at: float, source: str, outcome: str, status: int, verification: str,
                  body_sha256: str | None, delivery_id: str | None = None, incident_key: str | None = None,
                  run_id: str | None = None, **extra: Any) -> str:
    """One record as its JSON line (no newline); `at` first, as `stamp(at)`, so readers find it cheaply.

    The fixed fields are written as text (what the encoder writes for a dict of them, about half
    the cost); the extras that are set follow, in their order."""
    line = (f'{{"at":{_text(stamp(at))},"source":{_json(source)},"delivery_id":{_json(delivery_id)},'
            f'"outcome":{_json(outcome)},"status":{_json(status)},"verification":{_json(verification)},'
            f'"body_sha256":{_json(body_sha256)},"incident_key":{_json(incident_key)},'
            f'"run_id":{_json(run_id)}')
    kept = {k: v for k, v in extra.items() if v is not None and v != [] and v != ()}
    return line + "," + _encode(kept)[1:] if kept else line + "}"


class AuditWriter(Protocol):
    """Where the intake writes: each record is stored before `write` returns."""

    def write(self, *, at: float, source: str, outcome: str, status: int, verification: str,
              body_sha256: str | None, delivery_id: str | None = None, incident_key: str | None = None,
              run_id: str | None = None, **extra: Any) -> None: ...

    def close(self) -> None: ...


class AuditReader(Protocol):
    """What evidence reads: records of every replica in time order, one window at a time."""

    source: str  # where it reads, as the bundle's manifest names it

    def missing(self) -> str | None:
        """Why there is nothing to read (no log yet), or None."""
        ...

    def read_window(self, start: float | None = None, end: float | None = None) -> Iterator[bytes]:
        """Raw record lines stamped from `start` to `end` (Unix seconds; None: open), oldest first."""
        ...


class FileAuditReader:
    """The files of one intake's log (`AuditReader`)."""

    def __init__(self, path: Path) -> None:
        self.path, self.source = path, str(path)

    def missing(self) -> str | None:
        return None if self.path.exists() else f"{self.path} does not exist (no delivery recorded yet)"

    def read_window(self, start: float | None = None, end: float | None = None) -> Iterator[bytes]:
        return read_window(self.path, start, end)


class AuditLog:
    """Append-only JSONL writer: one `write(2)` per record on an O_APPEND descriptor, so each record
    reaches the OS before the delivery is answered (a crash of the service loses none)."""

    def __init__(self, path: Path, *, max_bytes: int = 10 * 1_048_576, backups: int = 5) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes, self.backups = max_bytes, backups
        self._lock = threading.Lock()
        self._fd = -1
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        os.close(self._fd)
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def write(self, *, at: float, source: str, outcome: str, status: int, verification: str,
              body_sha256: str | None, delivery_id: str | None = None, incident_key: str | None = None,
              run_id: str | None = None, **extra: Any) -> None:
        """Append one record (`at` is Unix seconds)."""
        line = (encode_record(at=at, source=source, outcome=outcome, status=status, verification=verification,
                              body_sha256=body_sha256, delivery_id=delivery_id, incident_key=incident_key,
                              run_id=run_id, **extra) + "\n").encode()
        with self._lock:
            if self._fd < 0:
                return
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            os.write(self._fd, line)
            self._size += len(line)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


Kind = tuple[str, str, int, str, str]  # source, client, status, reason, verification


class RejectionSampler:
    """Decides which refused requests get a record of their own; counts the others.

    At most `max_kinds` kinds are tracked per period; further kinds share one whose client is "*", so
    a sender varying its address cannot grow memory or the log without bound.
    """

    def __init__(self, period_s: float, *, max_kinds: int = 256) -> None:
        self.period_s, self.max_kinds = period_s, max_kinds
        self._kinds: dict[Kind, list[float]] = {}  # kind -> [period start, repeats not yet written]
        self._lock = threading.Lock()

    def admit(self, kind: Kind, now: float) -> int | None:
        """None: counted only. Else write a record now, with this many repeats since the last one."""
        with self._lock:
            entry = self._kinds.get(kind)
            if entry is None and len(self._kinds) >= self.max_kinds:
                kind = (kind[0], "*", *kind[2:])
                entry = self._kinds.get(kind)
            if entry is None:
                self._kinds[kind] = [now, 0]
                return 0
            if now - entry[0] < self.period_s:
                entry[1] += 1
                return None
            repeats = int(entry[1])
            entry[0], entry[1] = now, 0
            return repeats

    def due(self, now: float) -> list[tuple[Kind, int]]:
        """Kinds whose period ended with repeats not yet written (reset and forgotten)."""
        out = []
        with self._lock:
            for kind, (start, repeats) in list(self._kinds.items()):
                if now - start >= self.period_s:
                    del self._kinds[kind]
                    if repeats:
                        out.append((kind, int(repeats)))
        return out

    def drain(self) -> list[tuple[Kind, int]]:
        """Every kind with repeats not yet written (at shutdown)."""
        with self._lock:
            out = [(k, int(e[1])) for k, e in self._kinds.items() if e[1]]
            self._kinds.clear()
        return out


def audit_files(path: Path) -> list[Path]:
    """The audit log's files, oldest first (`audit.jsonl.N` ... `audit.jsonl.1`, `audit.jsonl`)."""
    rotated = []
    for p in path.parent.glob(path.name + ".*"):
        suffix = p.name[len(path.name) + 1:]
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    return [p for _, p in sorted(rotated, reverse=True)] + ([path] if path.exists() else [])


def _last_at(path: Path) -> str | None:
    """The `at` of a file's last record (read from its tail, not the whole file)."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 4096))
        lines = f.read().splitlines()
    for line in reversed(lines):
        m = _AT.match(line)
        if m:
            return m.group(1).decode()
    return None


def _seek_before(f: Any, lo: str) -> None:
    """Position `f` at a line start at or before the first record stamped `lo` or later (bisection on
    the time-ordered file: a few reads instead of the whole file)."""
    f.seek(0, os.SEEK_END)
    low, high = 0, f.tell()
    while high - low > 65_536:
        mid = (low + high) // 2
        f.seek(mid)
        f.readline()  # to the next line start
        m = _AT.match(f.readline())
        if m is None or m.group(1).decode() >= lo:
            high = mid
        else:
            low = mid
    f.seek(low)
    if low:
        f.readline()


def read_window(path: Path, start: float | None = None, end: float | None = None) -> Iterator[bytes]:
    """Raw lines of the audit log (rotated files included) from `start` to `end` (Unix seconds; None:
    open). Files that ended before `start` are not opened beyond their last line; reading stops at
    the first record after `end`. Lines that are not records are passed on for the caller to judge."""
    lo = stamp(start) if start is not None else None
    hi = stamp(end) if end is not None else None
    for file in audit_files(path):
        if lo is not None:
            last = _last_at(file)
            if last is not None and last < lo:
                continue
        with file.open("rb") as f:
            if lo is not None:
                _seek_before(f, lo)
            for line in f:
                m = _AT.match(line)
                if m:
                    at = m.group(1).decode()
                    if lo is not None and at < lo:
                        continue
                    if hi is not None and at > hi:
                        return
                yield line


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Every record of an audit log, rotated files included (for tests, drills and evidence)."""
    return [json.loads(line) for line in read_window(path) if line.strip()]
