"""Manifest, chain, key-file and encryption logic, without Vault: a local ed25519 key signs as transit would."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from waguard.evidence.bundle import bundle_name, write_tar
from waguard.evidence.crypto import DecryptionFailed, decrypt_stream, encrypt_file
from waguard.evidence.manifest import (
    MANIFEST,
    SIGNATURE,
    TIMELINE,
    BundleRef,
    FileEntry,
    Manifest,
    SignatureRecord,
    TimelineInfo,
    chain_head,
    format_key_file,
    parse_key_file,
    rechain,
    safe_member_name,
    sha256_hex,
)
from waguard.evidence.verify import verify_bundle
from waguard.playbook.timeline import GENESIS, canonical, verify_chain

NOW = "2025-05-01T10:00:00.000+00:00"


def records(n: int) -> list[dict]:
    return rechain([{"seq": i, "step": f"s{i}", "detail": "x", "prev": ""} for i in range(n)])


@pytest.mark.parametrize("name, ok", [
    ("timeline.jsonl", True), ("meta/templates.json", True), ("logs/000-ci.log", True),
    ("/etc/passwd", False), ("../x", False), ("a/../b", False), ("a//b", False), ("", False),
    (".hidden", False), ("a/b/c/d/e", False), ("a b", False),
])
def test_safe_member_names(name: str, ok: bool) -> None:
    assert safe_member_name(name) is ok


@given(st.integers(0, 30))
def test_rechain_makes_any_record_list_chain(n: int) -> None:
    chained = rechain([{"seq": i, "prev": "garbage", "data": {"i": i}} for i in range(n)])
    verify_chain(chained)
    assert chain_head(chained) == (GENESIS if n == 0 else chain_head(chained))


def test_reordered_or_dropped_records_break_the_chain() -> None:
    from waguard.playbook.timeline import TimelineBroken

    good = records(4)
    for bad in (good[::-1], good[1:], good[:1] + good[2:], [good[0], good[2], good[1], good[3]]):
        with pytest.raises(TimelineBroken):
            verify_chain(bad)
    verify_chain(good[:-1])  # dropping the last record keeps a valid chain: the manifest's head catches it


def keypair() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, base64.b64encode(raw).decode()


def test_key_file_round_trips_every_version() -> None:
    (_, k1), (_, k2) = keypair(), keypair()
    text = format_key_file("waguard-evidence", {2: k2, 1: k1})
    parsed = parse_key_file(text.encode())
    assert parsed == {1: base64.b64decode(k1), 2: base64.b64decode(k2)}
    assert text.index("key_version=1") < text.index("key_version=2")


def test_key_file_accepts_a_bare_pem_or_base64() -> None:
    private, b64 = keypair()
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert parse_key_file(pem) == {None: base64.b64decode(b64)}
    assert parse_key_file(b64.encode()) == {None: base64.b64decode(b64)}
    with pytest.raises(ValueError):
        parse_key_file(b"hello")


def test_manifest_bytes_are_canonical_and_stable() -> None:
    m = Manifest(incident_id="INC-1", phase="open", created_at=NOW, signing_key="k", files=[])
    assert m.to_bytes() == canonical(json.loads(m.to_bytes()))
    assert Manifest.model_validate_json(m.to_bytes()) == m


def test_bundle_ref_summary_names_path_and_digest() -> None:
    ref = BundleRef(path="/e/INC/x.tar.gz", sha256="a" * 64, manifest_sha256="b" * 64, key_version=3, phase="close")
    assert "/e/INC/x.tar.gz" in ref.summary_line() and "a" * 64 in ref.summary_line()


def test_bundle_names_sort_by_time() -> None:
    a = bundle_name("2025-05-01T10:00:00.000+00:00", "open")
    b = bundle_name("2025-05-01T10:00:00.001+00:00", "close")
    assert a < b and a.startswith("20250501T100000.000Z-open-") and a.endswith(".tar.gz")


def local_bundle(tmp: Path, private: Ed25519PrivateKey, members: dict[str, bytes],
                 timeline: TimelineInfo | None = None) -> Path:
    files = [FileEntry(name=n, sha256=sha256_hex(d), size=len(d), source="test", collected_at=NOW)
             for n, d in members.items()]
    manifest = Manifest(incident_id="INC-1", phase="open", created_at=NOW, signing_key="k", files=files,
                        timeline=timeline).to_bytes()
    sig = "vault:v1:" + base64.b64encode(private.sign(manifest)).decode()
    signature = canonical(SignatureRecord(key="k", key_version=1, signature=sig).model_dump())
    paths = []
    for name, data in members.items():
        p = tmp / name.replace("/", "_")
        p.write_bytes(data)
        paths.append((name, p))
    out = tmp / "b.tar.gz"
    write_tar(out, [(MANIFEST, manifest), (SIGNATURE, signature)], paths, mtime=0, level=1)
    return out


def test_verify_names_the_timeline_when_its_head_disagrees_with_a_signed_manifest(tmp_path: Path) -> None:
    private, b64 = keypair()
    good = records(3)
    body = b"".join(canonical(r) + b"\n" for r in good[:-1])
    info = TimelineInfo(records=3, head=chain_head(good), source_head=chain_head(good), rechained=False)
    # Signed by the key holder with a manifest promising 3 records while the file has 2 (a writer bug
    # or a truncation before signing): the chain itself is valid, the head check catches it.
    path = local_bundle(tmp_path, private, {TIMELINE: body}, info)
    report = verify_bundle(path, b64.encode())
    assert not report.ok and "records dropped" in (report.failure or "")


def test_verify_accepts_a_locally_signed_bundle(tmp_path: Path) -> None:
    private, b64 = keypair()
    good = records(3)
    body = b"".join(canonical(r) + b"\n" for r in good)
    info = TimelineInfo(records=3, head=chain_head(good), source_head=chain_head(good), rechained=False)
    path = local_bundle(tmp_path, private, {TIMELINE: body, "extra.json": b"{}"}, info)
    report = verify_bundle(path, format_key_file("k", {1: b64}).encode())
    assert report.ok, report.failure
    assert report.key_version == 1 and "timeline chain (3 records)" in report.checks
    assert "no key for version 1" in (verify_bundle(path, format_key_file("k", {2: b64}).encode()).failure or "")


@given(st.binary(max_size=5000))
def test_encryption_round_trips_and_any_change_fails(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, enc, out = Path(tmp, "p"), Path(tmp, "c"), Path(tmp, "o")
        src.write_bytes(data)
        key = secrets.token_bytes(32)
        nonce, tag = encrypt_file(src, enc, key, b"aad")
        with enc.open("rb") as f:
            decrypt_stream(f, out, key, nonce, tag, b"aad")
        assert out.read_bytes() == data
        for bad_key, bad_aad in ((secrets.token_bytes(32), b"aad"), (key, b"other")):
            with enc.open("rb") as f, pytest.raises(DecryptionFailed):
                decrypt_stream(f, out, bad_key, nonce, tag, bad_aad)
            assert not out.exists()
