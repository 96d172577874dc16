"""The drill's canary scan finds a planted secret in every local store it reads, and only there."""

from __future__ import annotations

import base64
import binascii
import io
import tarfile
from pathlib import Path
from urllib.parse import quote

from waguard.drills.canary import (
    bundle_texts,
    file_texts,
    local_texts,
    max_form_len,
    scan_texts,
    tree_texts,
)
from waguard.settings import Settings

SECRET = "EAAGcanary/Secret+value=42"
OTHER = "xoxb-not-planted-anywhere-1234"
SECRETS = [SECRET, OTHER]


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _write_bundle(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _stack(tmp_path: Path) -> tuple[Settings, Path]:
    home = tmp_path / "stack"
    settings = Settings(stack={"home": home}, intake={"state_dir": home / "intake"},
                        evidence={"dir": home / "evidence"}, incidents_dir=home / "incidents",
                        meta={"ledger_path": home / "ledger.sqlite3"}, _env_file=None)
    prefect_home = home / "prefect"
    prefect_home.mkdir(parents=True)
    (prefect_home / "prefect.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    (prefect_home / "prefect.db-wal").write_bytes(b"\x00\x01wal frame")
    (home / "intake").mkdir()
    (home / "intake" / "audit.jsonl").write_text('{"event": "verified", "source": "github"}\n')
    (home / "incidents").mkdir()
    (home / "incidents" / "INC-1.jsonl").write_text('{"step": "open"}\n')
    (home / "logs").mkdir()
    (home / "logs" / "intake.log").write_text("INFO started\n")
    (home / "ledger.sqlite3").write_bytes(b"SQLite format 3\x00ledger")
    _write_bundle(home / "evidence" / "INC-1" / "b.tar.gz",
                  {"manifest.json": b'{"files": []}', "slack/messages.json": b"[]"})
    (home / "evidence" / "waguard-evidence.pub.pem").write_text("-----BEGIN PUBLIC KEY-----\n")
    return settings, prefect_home


def _hits(settings: Settings, prefect_home: Path) -> set[tuple[str, str]]:
    report = scan_texts(local_texts(settings, prefect_home, overlap=max_form_len(SECRETS)), SECRETS)
    assert all(SECRET not in str(h) and SECRET not in repr(h) for h in report.hits)
    assert all(h.secret_ref.startswith("secret#0 ") for h in report.hits)
    return {(h.where, h.encoding) for h in report.hits}


def test_a_clean_stack_has_no_hits_and_every_place_is_counted(tmp_path: Path) -> None:
    settings, prefect_home = _stack(tmp_path)
    report = scan_texts(local_texts(settings, prefect_home), SECRETS)
    assert report.clean and report.hits == []
    # db, wal, audit, timeline, log, ledger, two bundle members, the public key
    assert report.places == 9
    assert report.secrets == 2
    assert report.bytes_scanned > 10_000


def test_raw_secret_in_the_prefect_database(tmp_path: Path) -> None:
    settings, prefect_home = _stack(tmp_path)
    db = prefect_home / "prefect.db"
    db.write_bytes(db.read_bytes() + b"\x00\xff" + SECRET.encode() + b"\x00")
    assert _hits(settings, prefect_home) == {("prefect-home:prefect.db", "raw")}


def test_hex_secret_in_the_wal(tmp_path: Path) -> None:
    settings, prefect_home = _stack(tmp_path)
    (prefect_home / "prefect.db-wal").write_bytes(b"\x07" + binascii.hexlify(SECRET.encode()) + b"\x07")
    assert _hits(settings, prefect_home) == {("prefect-home:prefect.db-wal", "hex")}


def test_url_encoded_secret_in_the_audit_log(tmp_path: Path) -> None:
    settings, prefect_home = _stack(tmp_path)
    with (settings.intake.state_dir / "audit.jsonl").open("a") as f:
        f.write(f'{{"query": "token={quote(SECRET, safe="")}"}}\n')
    assert _hits(settings, prefect_home) == {("intake:audit.jsonl", "url")}


def test_base64_secret_in_a_bundle_member(tmp_path: Path) -> None:
    settings, prefect_home = _stack(tmp_path)
    bundle = settings.evidence.dir / "INC-2" / "c.tar.gz"
    _write_bundle(bundle, {"manifest.json": b"{}", "logs/flow.log": f"auth {_b64(SECRET)}".encode()})
    assert _hits(settings, prefect_home) == {("evidence:INC-2/c.tar.gz:logs/flow.log", "base64")}


def test_secret_in_a_timeline_a_stack_log_and_the_ledger(tmp_path: Path) -> None:
    settings, prefect_home = _stack(tmp_path)
    (settings.incidents_dir / "INC-1.jsonl").write_text(f"{SECRET}\n")
    (settings.stack.home / "logs" / "runner.log").write_text(f"GET /?t={quote(SECRET, safe='')}\n")
    settings.meta.ledger_path.write_bytes(SECRET.encode())
    assert _hits(settings, prefect_home) == {("incidents:INC-1.jsonl", "raw"), ("logs:runner.log", "url"),
                                             ("meta:ledger", "raw")}


def test_an_unreadable_bundle_is_scanned_as_raw_bytes(tmp_path: Path) -> None:
    settings, prefect_home = _stack(tmp_path)
    (settings.evidence.dir / "INC-1" / "broken.tar.gz").write_bytes(b"not gzip " + SECRET.encode())
    assert _hits(settings, prefect_home) == {("evidence:INC-1/broken.tar.gz", "raw")}


def test_a_missing_prefect_database_is_an_error(tmp_path: Path) -> None:
    settings, prefect_home = _stack(tmp_path)
    (prefect_home / "prefect.db").unlink()
    try:
        list(local_texts(settings, prefect_home))
    except FileNotFoundError:
        return
    raise AssertionError("a scan without the Prefect database must not pass")


def test_a_secret_straddling_a_chunk_boundary_is_found(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    chunk = 1024
    for cut in (1, len(SECRET) // 2, len(SECRET) - 1):
        path.write_bytes(b"\x00" * (chunk - cut) + SECRET.encode() + b"\x00" * (3 * chunk))
        chunks = list(file_texts(path, "prefect:db", chunk=chunk, overlap=max_form_len(SECRETS)))
        assert len(chunks) > 1 and all(SECRET not in text for _, text in chunks[:1])
        report = scan_texts(chunks, SECRETS)
        assert [(h.where, h.encoding) for h in report.hits] == [("prefect:db", "raw")], cut
        assert report.places == 1


def test_without_overlap_the_straddling_secret_would_be_missed(tmp_path: Path) -> None:
    """The guard on the test above: the boundary really does split the value."""
    path = tmp_path / "big.db"
    path.write_bytes(b"\x00" * 1000 + SECRET.encode() + b"\x00" * 2000)
    assert scan_texts(file_texts(path, "x", chunk=1010, overlap=0), SECRETS).hits == []
    assert len(scan_texts(file_texts(path, "x", chunk=1010, overlap=max_form_len(SECRETS)), SECRETS).hits) == 1


def test_a_hex_secret_over_a_boundary_inside_a_bundle_member(tmp_path: Path) -> None:
    hexed = binascii.hexlify(SECRET.encode())
    _write_bundle(tmp_path / "ev" / "b.tar.gz", {"big.bin": b"." * (4096 - 10) + hexed + b"." * 5000})
    report = scan_texts(bundle_texts(tmp_path / "ev", chunk=4096, overlap=max_form_len(SECRETS)), SECRETS)
    assert [(h.where, h.encoding) for h in report.hits] == [("evidence:b.tar.gz:big.bin", "hex")]


def test_a_place_named_after_a_secret_is_renamed(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / f"{SECRET.replace('/', '_')}.log").write_text("clean")
    (tmp_path / "logs" / f"{_b64(OTHER)}.log").write_text(OTHER)
    report = scan_texts(tree_texts(tmp_path / "logs", "logs"), SECRETS)
    assert {(h.where, h.encoding) for h in report.hits} == {
        ("place#0 (its name holds a secret):name", "base64"), ("place#0 (its name holds a secret)", "raw")}
    assert all(OTHER not in str(h) and _b64(OTHER).rstrip("=") not in str(h) for h in report.hits)
