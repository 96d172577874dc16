"""Retention: bundles past their window go, each deletion is logged in a hash-chained file, others stay."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from waguard.evidence.bundle import bundle_name, write_tar
from waguard.evidence.manifest import MANIFEST, SIGNATURE, Manifest
from waguard.evidence.retention import PRUNE_LOG, is_expired, prune
from waguard.playbook.timeline import verify_chain

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def bundle(root: Path, incident: str, age_days: float, retention_days: int) -> Path:
    created = (NOW - timedelta(days=age_days)).isoformat(timespec="milliseconds")
    manifest = Manifest(incident_id=incident, phase="open", created_at=created, signing_key="k", files=[],
                        retention_days=retention_days).to_bytes()
    path = root / incident / bundle_name(created, "open")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tar(path, [(MANIFEST, manifest), (SIGNATURE, b"{}")], [], mtime=0, level=1)
    return path


@pytest.mark.parametrize("age, window, expired", [(0, 1, False), (1, 1, False), (1.01, 1, True), (400, 365, True)])
def test_is_expired(age: float, window: int, expired: bool) -> None:
    assert is_expired(NOW - timedelta(days=age), window, NOW) is expired


def test_each_bundle_keeps_the_window_its_policy_set(tmp_path: Path) -> None:
    old_short = bundle(tmp_path, "INC-1", 40, 30)
    old_long = bundle(tmp_path, "INC-2", 40, 365)
    young = bundle(tmp_path, "INC-3", 2, 30)
    (tmp_path / "INC-3" / "notes.txt").write_text("not ours")  # never touched
    report = prune(tmp_path, now=NOW)
    assert [d["path"] for d in report.deleted] == [str(old_short)]
    assert not old_short.exists() and not old_short.parent.exists()
    assert old_long.exists() and young.exists() and (tmp_path / "INC-3" / "notes.txt").exists()
    assert report.kept == 2


def test_older_than_overrides_and_every_deletion_is_logged_and_chained(tmp_path: Path) -> None:
    a, b = bundle(tmp_path, "INC-1", 40, 365), bundle(tmp_path, "INC-2", 20, 365)
    prune(tmp_path, older_than_days=30, now=NOW)
    prune(tmp_path, older_than_days=10, now=NOW)
    log = [json.loads(line) for line in (tmp_path / PRUNE_LOG).read_text().splitlines()]
    assert [r["path"] for r in log] == [str(a), str(b)]
    assert [r["window_days"] for r in log] == [30, 10] and all(len(r["sha256"]) == 64 for r in log)
    verify_chain(log)


def test_dry_run_deletes_and_logs_nothing(tmp_path: Path) -> None:
    a = bundle(tmp_path, "INC-1", 40, 30)
    report = prune(tmp_path, now=NOW, dry_run=True)
    assert len(report.deleted) == 1 and a.exists() and not (tmp_path / PRUNE_LOG).exists()


def test_an_unreadable_bundle_is_kept_and_reported(tmp_path: Path) -> None:
    junk = tmp_path / "INC-1" / bundle_name(NOW.isoformat(), "open")
    junk.parent.mkdir()
    junk.write_bytes(b"garbage")
    report = prune(tmp_path, older_than_days=0, now=NOW + timedelta(days=1))
    assert junk.exists() and len(report.unreadable) == 1 and not report.deleted


def test_missing_directory_is_nothing_to_do(tmp_path: Path) -> None:
    assert prune(tmp_path / "nope", now=NOW).deleted == []
