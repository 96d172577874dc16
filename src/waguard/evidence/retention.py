"""Retention: delete bundles past their window and record each deletion.

The window is the one the runbook policy set when the bundle was written (`retention_days` in its
signed manifest); `--older-than DAYS` overrides it for one run. Age is the manifest's `created_at`,
not the file's mtime, which a copy or restore changes. Every deletion is appended to
`<evidence dir>/prune-log.jsonl`, hash-chained like the incident timeline, with the deleted file's
digest, so "what was deleted, when, under which window" stays provable. Only files named like our
bundles are considered; anything else in the directory is left alone.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from waguard.evidence.manifest import MANIFEST, manifest_from_bytes
from waguard.evidence.stream import file_sha256
from waguard.playbook.timeline import GENESIS, canonical, now_iso, record_digest

PRUNE_LOG = "prune-log.jsonl"
_BUNDLE_NAME = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-(?:open|close)-[0-9a-f]{6}\.tar\.gz$")


@dataclass
class PruneReport:
    """What a prune run did."""

    deleted: list[dict[str, Any]] = field(default_factory=list)
    kept: int = 0
    unreadable: list[str] = field(default_factory=list)  # bundles whose age could not be read: kept


def bundle_files(root: Path) -> list[Path]:
    """Every bundle under the evidence directory (one folder per incident), oldest name first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*/*.tar.gz") if _BUNDLE_NAME.match(p.name))


def read_manifest_head(path: Path) -> tuple[datetime, int]:
    """(created_at, retention_days) from a bundle's manifest.json, its first member (cheap to read).

    Raises:
        ValueError: the bundle or its manifest cannot be read.
    """
    try:
        with tarfile.open(path, "r:gz") as tar:
            info = tar.next()
            f = tar.extractfile(info) if info is not None and info.name == MANIFEST else None
            if f is None:
                raise ValueError("manifest.json is not the first member")
            manifest = manifest_from_bytes(f.read())
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(f"cannot read {path.name}: {type(err).__name__}") from None
    created = datetime.fromisoformat(manifest.created_at)
    return (created if created.tzinfo else created.replace(tzinfo=UTC)), manifest.retention_days


def is_expired(created_at: datetime, window_days: int, now: datetime) -> bool:
    """True when a bundle written at `created_at` is past a window of `window_days` at `now`. Pure."""
    return now - created_at > timedelta(days=window_days)


def _append(log: Path, record: dict[str, Any]) -> None:
    prev, seq = GENESIS, 0
    if log.exists():
        with log.open() as f:
            lines = [line for line in f if line.strip()]
        if lines:
            last = json.loads(lines[-1])
            prev, seq = record_digest(last), len(lines)
    entry = {**record, "seq": seq, "prev": prev}
    with log.open("a") as f:
        f.write(canonical(entry).decode() + "\n")
        f.flush()
        os.fsync(f.fileno())


def prune(root: Path, *, older_than_days: int | None = None, now: datetime | None = None,
          dry_run: bool = False) -> PruneReport:
    """Delete bundles under `root` past their window (or `older_than_days`); log each deletion.

    Args:
        root: the evidence directory.
        older_than_days: overrides every bundle's own `retention_days` for this run.
        now: the clock (tests pass a fixed time).
        dry_run: report what would go, delete and log nothing.
    """
    if older_than_days is not None and older_than_days < 0:
        raise ValueError("older_than_days must be >= 0")
    now = now or datetime.now(UTC)
    report = PruneReport()
    for path in bundle_files(root):
        try:
            created, window = read_manifest_head(path)
        except ValueError as err:
            report.unreadable.append(str(err))
            continue
        window = older_than_days if older_than_days is not None else window
        if not is_expired(created, window, now):
            report.kept += 1
            continue
        record = {"at": now_iso(), "action": "deleted", "path": str(path), "sha256": file_sha256(path),
                  "created_at": created.isoformat(), "window_days": window}
        report.deleted.append(record)
        if dry_run:
            continue
        _append(root / PRUNE_LOG, record)  # logged before the delete: a crash leaves a record, not a gap
        path.unlink()
        try:
            path.parent.rmdir()  # the incident's folder, once its last bundle is gone
        except OSError:
            pass
    return report
