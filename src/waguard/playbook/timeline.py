"""The incident record: an append-only, hash-chained timeline plus a little resumable state.

Every step records what it did here, so a re-run of the same incident can see what already happened
and a forensic reader can prove nothing was rewritten: each record carries the SHA-256 of the one
before. Records hold ids, paths and outcomes, never secret values (callers pass Vault paths).

Stored as files under `<incidents_dir>/<incident_id>/`: `timeline.jsonl` and `state.json`. One run
per playbook and WABA at a time (a Prefect concurrency limit) keeps a single writer per incident.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

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


@dataclass
class IncidentRecord:
    """Files of one incident. Cheap to construct; every call reads or appends on disk."""

    root: Path
    incident_id: str

    def __post_init__(self) -> None:
        if not INCIDENT_ID.match(self.incident_id):
            raise ValueError("incident_id must be 3-128 characters of letters, digits and . _ : -")
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def dir(self) -> Path:
        return self.root / self.incident_id.replace(":", "_")

    @property
    def timeline_path(self) -> Path:
        return self.dir / "timeline.jsonl"

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    # --- timeline ---

    def events(self) -> list[TimelineEvent]:
        return [TimelineEvent.model_validate(r) for r in self._raw()]

    def _raw(self) -> list[dict[str, Any]]:
        if not self.timeline_path.exists():
            return []
        with self.timeline_path.open() as f:
            return [json.loads(line) for line in f if line.strip()]

    def append(self, step: str, outcome: Outcome, detail: str = "", *, target: str | None = None,
               actor: str | None = "waguard", data: dict[str, Any] | None = None) -> TimelineEvent:
        records = self._raw()
        prev = record_digest(records[-1]) if records else GENESIS
        event = TimelineEvent(seq=len(records), at=now_iso(), step=step, outcome=outcome, detail=detail,
                              target=target, actor=actor, data=data or {}, prev=prev)
        with self.timeline_path.open("a") as f:
            f.write(canonical(event.model_dump()).decode() + "\n")
            f.flush()
            os.fsync(f.fileno())
        return event

    def verify(self) -> None:
        verify_chain(self._raw())

    def last(
        self, step: str, outcome: Outcome | None = None, target: str | None = None
    ) -> TimelineEvent | None:
        for event in reversed(self.events()):
            if event.step == step and (outcome is None or event.outcome == outcome) and (
                target is None or event.target == target
            ):
                return event
        return None

    # --- resumable state (small, non-secret: message refs, the incident's start time) ---

    def state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {}
        return dict(json.loads(self.state_path.read_text()))

    def remember(self, **values: Any) -> dict[str, Any]:
        state = {**self.state(), **values}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, sort_keys=True, indent=1))
        tmp.replace(self.state_path)
        return state
