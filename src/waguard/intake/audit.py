"""The intake's audit log: one JSON line per delivery in `<state_dir>/audit.jsonl`.

Fields (the evidence bundles read them): `at` (ISO-8601 UTC), `source`, `delivery_id`, `outcome`,
`verification`, `body_sha256`, `incident_key`, `run_id`, plus `status` (the HTTP answer) and, where
useful, `incidents` and `note`. Never a secret, a message body or a clear phone number: the body is
represented by its hash, ids come from headers checked against a narrow pattern, notes are fixed text.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def safe_id(value: str | None) -> str | None:
    """A header-supplied id as it may be logged: kept if it is short and plain, else dropped."""
    return value if value is not None and _SAFE_ID.fullmatch(value) else None


class AuditLog:
    """Append-only JSONL writer: one `write(2)` per record on an O_APPEND descriptor, so each record
    reaches the OS before the delivery is answered (a crash of the service loses none)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()

    def write(self, *, at: float, source: str, outcome: str, status: int, verification: str,
              body_sha256: str | None, delivery_id: str | None = None, incident_key: str | None = None,
              run_id: str | None = None, **extra: Any) -> None:
        """Append one record (`at` is Unix seconds)."""
        secs = int(at)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{int((at - secs) * 1000):03d}Z"
        record = {
            "at": stamp,
            "source": source, "delivery_id": delivery_id, "outcome": outcome, "status": status,
            "verification": verification, "body_sha256": body_sha256, "incident_key": incident_key,
            "run_id": run_id, **{k: v for k, v in extra.items() if v not in (None, [], ())},
        }
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Every record of an audit log (for tests, drills and evidence)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
