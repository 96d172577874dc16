"""The incident record: an append-only, hash-chained timeline plus a little resumable state.

Every step records what it did here, so a re-run of the same incident can see what already happened
and a forensic reader can prove nothing was rewritten: each record carries the SHA-256 of the one
before. Records hold ids, paths and outcomes, never secret values (callers pass Vault paths).

Two stores behind one interface (`IncidentTimeline`, opened through a `TimelineStore`, chosen by
`waguard.state.backends.open_timelines` from the `state.dsn` setting): files under
`<incidents_dir>/<incident_id>/` (`timeline.jsonl` and `state.json`; `IncidentRecord` here, one
machine) or PostgreSQL tables shared by every launcher (`waguard.state.timeline_pg`). Both take a lock
over read-last-then-append, so two writers racing on one incident (a crashed run's hook and its retry)
still extend one unbroken chain.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from waguard.errors import WaguardError

GENESIS = "0" * 64
INCIDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,127}$")

Outcome = Literal["started", "done", "skipped", "already", "planned", "failed", "decided", "info", "ended"]


class TimelineBroken(WaguardError):
    """A timeline record does not chain to the one before it."""


class TimelineEvent(BaseModel):
    """One entry of the incident timeline."""

    model_config = {"extra": "forbid", "frozen": True}

    seq: int
    at: str = Field(description="ISO-8601 UTC time of the record.")
    step: str = Field(description="The runbook step, e.g. 'deregister-numbers'.")
    outcome: Outcome
    detail: str = ""
    target: str | None = Field(None, description="What was acted on: an object id or Vault path.")
    actor: str | None = Field(None, description="Who: 'waguard', an approver id, 'timeout-policy'.")
    data: dict[str, Any] = Field(default_factory=dict)
    prev: str = Field(description="SHA-256 of the previous record's canonical JSON (zeros for the first).")

    def digest(self) -> str:
        return record_digest(self.model_dump())


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_digest(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def verify_chain(records: list[dict[str, Any]]) -> None:
    """Raise TimelineBroken naming the first record that does not chain (pure)."""
    prev = GENESIS
    for i, record in enumerate(records):
        if record.get("prev") != prev:
            raise TimelineBroken(
                f"timeline record {i} (seq {record.get('seq')}) does not chain to record {i - 1}"
            )
        if record.get("seq") != i:
            raise TimelineBroken(
                f"timeline record {i} has seq {record.get('seq')}: records were dropped or reordered"
            )
        prev = record_digest(record)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def next_event(records: list[dict[str, Any]], step: str, outcome: Outcome, detail: str, target: str | None,
               actor: str | None, data: dict[str, Any] | None) -> TimelineEvent:
    """The record that extends `records` (the whole timeline so far, or just its last record)."""
    prev = record_digest(records[-1]) if records else GENESIS
    seq = int(records[-1]["seq"]) + 1 if records else 0
    return TimelineEvent(seq=seq, at=now_iso(), step=step, outcome=outcome, detail=detail, target=target,
                         actor=actor, data=data or {}, prev=prev)


def check_id(incident_id: str) -> None:
    if not INCIDENT_ID.match(incident_id):
        raise ValueError("incident_id must be 3-128 characters of letters, digits and . _ : -")


class IncidentTimeline(Protocol):
    """One incident's timeline and state, whichever store holds them. Contract:
    tests/contract/test_timeline_store.py (both backends)."""

    incident_id: str

    def raw(self) -> list[dict[str, Any]]:
        """The records exactly as stored, oldest first (what the evidence bundle and `verify` read)."""
        ...

    def exists(self) -> bool:
        """The incident has a timeline (at least one record)."""
        ...

    def events(self) -> list[TimelineEvent]: ...

    def append(self, step: str, outcome: Outcome, detail: str = "", *, target: str | None = None,
               actor: str | None = "waguard", data: dict[str, Any] | None = None) -> TimelineEvent:
        """Add a record chained to the last one; racing writers are serialised, never interleaved."""
        ...

    def verify(self) -> None:
        """Raise TimelineBroken naming the first record that does not chain."""
        ...

    def last(self, step: str, outcome: Outcome | None = None,
             target: str | None = None) -> TimelineEvent | None: ...

    def state(self) -> dict[str, Any]: ...

    def remember(self, **values: Any) -> dict[str, Any]:
        """Merge `values` into the state (top-level keys) and return the whole state."""
        ...


class TimelineStore(Protocol):
    """Where the timelines live: `open` takes any well-formed id (ValueError otherwise) and creates
    nothing until the first append or remember."""

    def open(self, incident_id: str) -> IncidentTimeline: ...

    def ids(self) -> list[str]:
        """The stored names of every incident with a timeline (files: ':' stored as '_')."""
        ...


class ReadsTimeline:
    """What both stores derive from `raw`."""

    def raw(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def exists(self) -> bool:
        return bool(self.raw())

    def events(self) -> list[TimelineEvent]:
        return [TimelineEvent.model_validate(r) for r in self.raw()]

    def verify(self) -> None:
        verify_chain(self.raw())

    def last(
        self, step: str, outcome: Outcome | None = None, target: str | None = None
    ) -> TimelineEvent | None:
        for event in reversed(self.events()):
            if event.step == step and (outcome is None or event.outcome == outcome) and (
                target is None or event.target == target
            ):
                return event
        return None


@dataclass
class IncidentRecord(ReadsTimeline):
    """Files of one incident (the file store). Cheap to construct (creates nothing); every call reads
    or appends on disk. Writers lock the incident's directory (flock): processes on one machine do
    not race."""

    root: Path
    incident_id: str

    def __post_init__(self) -> None:
        check_id(self.incident_id)

    @property
    def dir(self) -> Path:
        return self.root / self.incident_id.replace(":", "_")

    @property
    def timeline_path(self) -> Path:
        return self.dir / "timeline.jsonl"

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)  # on first write: reading creates nothing
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    # --- timeline ---

    def raw(self) -> list[dict[str, Any]]:
        if not self.timeline_path.exists():
            return []
        with self.timeline_path.open() as f:
            return [json.loads(line) for line in f if line.strip()]

    def exists(self) -> bool:
        return self.timeline_path.is_file()

    def append(self, step: str, outcome: Outcome, detail: str = "", *, target: str | None = None,
               actor: str | None = "waguard", data: dict[str, Any] | None = None) -> TimelineEvent:
        with self._locked():
            event = next_event(self.raw(), step, outcome, detail, target, actor, data)
            with self.timeline_path.open("a") as f:
                f.write(canonical(event.model_dump()).decode() + "\n")
                f.flush()
                os.fsync(f.fileno())
        return event

    # --- resumable state (small, non-secret: message refs, the incident's start time) ---

    def state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {}
        return dict(json.loads(self.state_path.read_text()))

    def remember(self, **values: Any) -> dict[str, Any]:
        with self._locked():
            state = {**self.state(), **values}
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, sort_keys=True, indent=1))
            tmp.replace(self.state_path)
        return state


@dataclass
class FileTimelines:
    """The file store: one directory per incident under `root` (settings.incidents_dir)."""

    root: Path

    def open(self, incident_id: str) -> IncidentRecord:
        return IncidentRecord(self.root, incident_id)

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "timeline.jsonl").is_file())
