"""The audit log rotates by size and is read by time window; the rejection sampler counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from waguard.intake.audit import (
    AuditLog,
    RejectionSampler,
    audit_files,
    encode_record,
    read_audit,
    read_window,
    stamp,
)

T0 = 1_764_000_000.0


def fill(path: Path, n: int, *, max_bytes: int = 65_536, backups: int = 5) -> None:
    log = AuditLog(path, max_bytes=max_bytes, backups=backups)
    for i in range(n):
        log.write(
            at=T0 + i,
            source="github",
            outcome="started",
            status=200,
            verification="ok",
            body_sha256=f"{i:064x}",
            delivery_id=f"d-{i}",
        )
    log.close()


def test_the_log_rotates_by_size_keeping_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    fill(path, 2000)  # ~500 KB through a 64 KiB limit
    files = audit_files(path)
    assert [f.name for f in files] == [f"audit.jsonl.{n}" for n in range(5, 0, -1)] + ["audit.jsonl"]
    assert all(f.stat().st_size <= 65_536 for f in files)
    records = read_audit(path)
    ids = [int(r["delivery_id"][2:]) for r in records]
    assert ids == list(range(ids[0], 2000))  # contiguous, in order, the newest kept
    assert ids[0] > 0  # the oldest went with the dropped file


def test_a_window_reads_only_its_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    fill(path, 1500, max_bytes=1_048_576, backups=3)
    fill(path, 0)  # reopen: appends continue in the same file
    got = [json.loads(line)["delivery_id"] for line in read_window(path, T0 + 1200, T0 + 1210)]
    assert got == [f"d-{i}" for i in range(1200, 1211)]
    assert [json.loads(line)["delivery_id"] for line in read_window(path, T0 + 1498)] == ["d-1498", "d-1499"]


def test_a_window_across_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    fill(path, 2000, max_bytes=131_072, backups=9)
    got = [json.loads(line)["delivery_id"] for line in read_window(path, T0 + 100, T0 + 1900)]
    assert got == [f"d-{i}" for i in range(100, 1901)]


def test_the_sampler_admits_the_first_of_a_kind_per_period() -> None:
    s = RejectionSampler(60.0)
    kind = ("github", "10.0.0.1", 401, "unauthorized", "failed:mismatch")
    other = ("github", "10.0.0.2", 401, "unauthorized", "failed:mismatch")
    assert s.admit(kind, T0) == 0
    assert [s.admit(kind, T0 + i) for i in range(1, 5)] == [None] * 4
    assert s.admit(other, T0 + 5) == 0  # a new sender is recorded at once
    assert s.admit(kind, T0 + 61) == 4  # the next period's first carries the count
    assert s.admit(kind, T0 + 62) is None
    assert s.due(T0 + 200) == [(kind, 1)]
    assert s.drain() == []


def test_the_sampler_bounds_the_kinds_it_tracks() -> None:
    s = RejectionSampler(60.0, max_kinds=3)
    admitted = [s.admit(("meta", f"10.0.0.{i}", 401, "x", "failed:mismatch"), T0) for i in range(100)]
    assert admitted.count(0) == 4  # three senders and one shared "*" kind
    assert s.drain() == [(("meta", "*", 401, "x", "failed:mismatch"), 96)]


def test_the_service_log_goes_to_its_file_only_and_rotates_by_size(tmp_path: Path) -> None:
    import logging

    from waguard.intake.server import configure_logging
    from waguard.settings import IntakeSettings, Settings

    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    settings = Settings(_env_file=None, intake=IntakeSettings(log_max_bytes=65_536, log_backups=2))  # type: ignore[call-arg]
    try:
        configure_logging(settings, tmp_path / "logs" / "intake.log")
        for i in range(3000):
            logging.getLogger("waguard.intake.app").warning("intake: line %d %s", i, "x" * 80)
        names = sorted(p.name for p in (tmp_path / "logs").iterdir())
        assert names == ["intake.log", "intake.log.1", "intake.log.2"]
        assert all(p.stat().st_size <= 65_536 for p in (tmp_path / "logs").iterdir())
        assert "line 2999" in (tmp_path / "logs" / "intake.log").read_text()
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved:
            root.addHandler(h)
        root.setLevel(level)


_TEXT = st.text(alphabet="ab\"\\\n\u00e9\u2028\U0001f600", max_size=6)
_OPTIONAL_TEXT = st.none() | _TEXT
_EXTRA = st.none() | st.just([]) | st.just(()) | _TEXT | st.integers() | st.booleans() \
    | st.lists(st.dictionaries(_TEXT, _OPTIONAL_TEXT, max_size=3), max_size=2)


@settings(max_examples=300, deadline=None)
@given(at=st.floats(min_value=0, max_value=4e9), source=_TEXT, outcome=_TEXT,
       status=st.integers(100, 599), verification=_TEXT, body_sha256=_OPTIONAL_TEXT,
       delivery_id=_OPTIONAL_TEXT, incident_key=_OPTIONAL_TEXT,
       run_id=_OPTIONAL_TEXT, extra=st.dictionaries(st.sampled_from(["note", "client", "repeats", "incidents",
                                                                     "closed", "weird\u00e9"]), _EXTRA))
def test_a_record_line_is_what_the_json_encoder_writes_for_its_fields(
        at: float, source: str, outcome: str, status: int, verification: str, body_sha256: str | None,
        delivery_id: str | None, incident_key: str | None, run_id: str | None, extra: dict[str, Any]) -> None:
    """The line is written as text: the same bytes as encoding the record as a dict (fixed fields in
    order, then the extras that are set), so readers and stored logs see no change."""
    record = {"at": stamp(at), "source": source, "delivery_id": delivery_id, "outcome": outcome,
              "status": status, "verification": verification, "body_sha256": body_sha256,
              "incident_key": incident_key, "run_id": run_id}
    record.update({k: v for k, v in extra.items() if v is not None and v != [] and v != ()})
    expected = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode(record)
    assert encode_record(at=at, source=source, outcome=outcome, status=status, verification=verification,
                         body_sha256=body_sha256, delivery_id=delivery_id, incident_key=incident_key,
                         run_id=run_id, **extra) == expected
