"""Collecting a large log streams in bounded memory (tracemalloc peak, a behaviour, not a timing), and
what comes out is fully redacted. The 100 MB figure lives in bench/evidence.py."""

from __future__ import annotations

import base64
import json
import tracemalloc
from pathlib import Path

from waguard.evidence.collect import collect_logs
from waguard.evidence.redact import Redactor
from waguard.evidence.stream import Staging

SECRET = "EAABsecretTokenValue0123456789abcdef"
MB = 1 << 20


def block() -> str:
    lines = [
        '2025-05-01T10:00:00.000Z INFO webhook delivery=abc status=200 path=/v23.0/106853218861309/messages',
        f"2025-05-01T10:00:01.000Z DEBUG auth header=Bearer {SECRET} b64={base64.b64encode(SECRET.encode()).decode()}",
        '{"from":"15550101234","type":"text","timestamp":"1714557600","id":"wamid.1","text":{"body":"hi there"}}',
        "2025-05-01T10:00:02.000Z INFO notify +44 20 7946 0958 and ops@acme.example",
    ]
    return "\n".join(lines) + "\n"


def make_log(path: Path, size: int, newlines: bool = True) -> None:
    piece = block() if newlines else block().replace("\n", " ")
    chunk = (piece * (MB // len(piece) + 1))[:MB]
    with path.open("w") as f:
        for _ in range(size // MB):
            f.write(chunk)


def collect_measured(tmp_path: Path, log: Path) -> tuple[int, Staging]:
    redactor = Redactor(key=b"k" * 32, secrets=[SECRET], known_ids=frozenset({"106853218861309"}))
    staging = Staging(tmp_path / "evidence")
    errors: list[str] = []
    tracemalloc.start()
    try:
        collect_logs(staging, [str(log)], tmp_path / "evidence", redactor, errors)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert errors == []
    return peak, staging


def assert_clean(path: Path) -> None:
    with path.open() as f:
        for line in f:
            assert SECRET not in line and "15550101234" not in line and "7946 0958" not in line
            assert "hi there" not in line and "ops@acme" not in line


def test_a_10_mb_log_streams_in_bounded_memory(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    make_log(log, 10 * MB)
    peak, staging = collect_measured(tmp_path, log)
    entry = staging.entries[0]
    out = staging.file(entry.name)
    assert peak < 12 * MB, f"peak {peak / MB:.1f} MiB for a 10 MiB log"  # about 2 chunks, not the file
    assert entry.redactions["secrets"] > 0 and entry.redactions["phones"] > 0 and entry.size == out.stat().st_size
    assert_clean(out)
    first = next(line for line in out.read_text().splitlines() if line.startswith("{"))  # no file left open
    assert json.loads(first)["text"]["body"] == "[body dropped]"


def test_one_huge_line_without_newlines_is_cut_safely_and_still_bounded(tmp_path: Path) -> None:
    log = tmp_path / "minified.log"
    make_log(log, 3 * MB, newlines=False)
    peak, staging = collect_measured(tmp_path, log)
    assert peak < 12 * MB, f"peak {peak / MB:.1f} MiB"
    assert_clean(staging.file(staging.entries[0].name))


def test_globs_name_per_incident_files_and_never_the_evidence_directory(tmp_path: Path) -> None:
    from waguard.evidence.collect import expand_globs

    (tmp_path / "ci" / "INC-9").mkdir(parents=True)
    (tmp_path / "ci" / "INC-9" / "build.log").write_text("x")
    (tmp_path / "ci" / "INC-8").mkdir()
    (tmp_path / "ci" / "INC-8" / "build.log").write_text("x")
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / "old.log").write_text("x")
    files, empty = expand_globs([str(tmp_path / "ci" / "{incident_id}" / "*.log"), str(tmp_path / "**" / "*.log"),
                                 str(tmp_path / "none-*.log")], tmp_path / "evidence", "INC-9")
    assert files[0] == tmp_path / "ci" / "INC-9" / "build.log"
    assert tmp_path / "evidence" / "old.log" not in files and len(files) == 2
    assert empty == [str(tmp_path / "none-*.log")]
