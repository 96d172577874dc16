"""Offline verification of a bundle: no Vault, no network, only the exported public key.

Checks, in this order, and names the first that fails:
1. the file's SHA-256, when the caller knows it (from the Slack summary or the Prefect artifact);
2. the archive: readable, `manifest.json` then `signature.json` first, regular files with safe and
   unique names;
3. the signature of `manifest.json`'s exact bytes, with the public key of the version it names;
4. every file the manifest lists: present, size, SHA-256 (in manifest order);
5. no member the manifest does not list;
6. the timeline: every record chains to the one before (`waguard.playbook.timeline.verify_chain`), and its
   length and head match the manifest.

An encrypted bundle verifies the same way on its outer layer (the signed manifest holds the hash of
`payload.enc`, so a changed ciphertext fails without any key). Looking inside needs the data key, and
only Vault can unwrap it: pass `decrypt`, a function from the wrapped key (`vault:vN:...`) to the raw
key bytes; the inner bundle is then verified in full as well.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from waguard.errors import WaguardError
from waguard.evidence.crypto import DecryptionFailed, decrypt_stream
from waguard.evidence.manifest import (
    MANIFEST,
    PAYLOAD,
    SIGNATURE,
    TIMELINE,
    Manifest,
    SignatureRecord,
    chain_head,
    manifest_from_bytes,
    parse_key_file,
    safe_member_name,
)
from waguard.evidence.stream import file_sha256
from waguard.playbook.timeline import TimelineBroken, canonical, verify_chain

_VAULT_SIGNATURE = re.compile(r"^vault:v([0-9]+):([A-Za-z0-9+/]+={0,2})$")
MAX_SMALL = 16 << 20  # manifest, signature and timeline are read into memory; nothing else is


class EvidenceInvalid(WaguardError):
    """A bundle failed verification; the message names the first check that failed."""


class _Fail(Exception):
    pass


@dataclass
class VerifyReport:
    """What `verify_bundle` found. `failure` names the first failed check; `checks` what passed."""

    path: Path
    ok: bool = False
    failure: str | None = None
    checks: list[str] = field(default_factory=list)
    manifest: Manifest | None = None
    manifest_sha256: str | None = None
    key_version: int | None = None
    encrypted: bool = False
    inner: VerifyReport | None = None

    def raise_for_failure(self) -> None:
        """Raise EvidenceInvalid when the bundle did not verify."""
        if not self.ok:
            raise EvidenceInvalid(f"{self.path}: {self.failure}")


@dataclass
class _Member:
    sha256: str
    size: int
    data: bytes | None = None  # only the small members kept for parsing


def _read_members(path: Path, spool: Path | None) -> dict[str, _Member]:
    """One pass over the archive: hash every member, keep the small ones, copy payload.enc to `spool`."""
    members: dict[str, _Member] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for i, info in enumerate(tar):
                name = info.name
                if name in members:
                    raise _Fail(f"member {name} appears twice")
                if not info.isfile():
                    raise _Fail(f"member {name} is not a regular file")
                if name not in (MANIFEST, SIGNATURE) and not safe_member_name(name):
                    raise _Fail(f"member name {name!r} is not a safe relative path")
                expected = {0: MANIFEST, 1: SIGNATURE}.get(i)
                if expected and name != expected:
                    raise _Fail(f"{expected} is not member {i + 1} of the archive (found {name})")
                members[name] = _hash_member(tar, info, spool if name == PAYLOAD else None)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise _Fail(f"archive is not a readable tar.gz ({type(err).__name__})") from None
    if SIGNATURE not in members:
        raise _Fail("archive lacks manifest.json and signature.json")
    return members


def _hash_member(tar: tarfile.TarFile, info: tarfile.TarInfo, spool: Path | None) -> _Member:
    f = tar.extractfile(info)
    assert f is not None
    digest, size = hashlib.sha256(), 0
    keep = info.name in (MANIFEST, SIGNATURE, TIMELINE) and info.size <= MAX_SMALL
    kept: list[bytes] = []
    out = spool.open("wb") if spool is not None else None
    try:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            if keep:
                kept.append(chunk)
            if out is not None:
                out.write(chunk)
    finally:
        if out is not None:
            out.close()
    return _Member(digest.hexdigest(), size, b"".join(kept) if keep else None)


def _check_signature(manifest: Manifest, manifest_bytes: bytes, sig_bytes: bytes | None,
                     public_key: bytes | None) -> int:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        sig = SignatureRecord.model_validate_json(sig_bytes or b"")
        m = _VAULT_SIGNATURE.match(sig.signature)
    except (ValidationError, ValueError):
        m = None
    # Byte-exact: the record must be what the writer produced (canonical JSON, canonical base64), so
    # no byte of signature.json can change without failing, not even one the signature ignores.
    try:
        raw = base64.b64decode(m.group(2), validate=True) if m else b""
    except ValueError:
        m = None
    if m is None or canonical(sig.model_dump()) != sig_bytes or base64.b64encode(raw).decode() != m.group(2):
        raise _Fail("signature.json is not a valid signature record")
    embedded = int(m.group(1))
    if embedded != sig.key_version:
        raise _Fail(f"signature.json says key version {sig.key_version} but the signature is by v{embedded}")
    if sig.key != manifest.signing_key:
        raise _Fail(f"signature.json names key {sig.key!r}, the manifest names {manifest.signing_key!r}")
    if public_key is None:
        raise _Fail("no public key given (export it with `waguard evidence export-key`)")
    try:
        keys = parse_key_file(public_key)
    except ValueError as err:
        raise _Fail(str(err)) from None
    pub = keys.get(sig.key_version, keys.get(None))
    if pub is None:
        raise _Fail(f"the public key file has no key for version {sig.key_version} of {sig.key!r}")
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(raw, manifest_bytes)
    except (InvalidSignature, ValueError):
        raise _Fail(f"signature does not match manifest.json (key {sig.key!r} v{sig.key_version})") from None
    return sig.key_version


def _check_files(manifest: Manifest, members: dict[str, _Member]) -> None:
    for entry in manifest.files:
        got = members.get(entry.name)
        if got is None:
            raise _Fail(f"member {entry.name} is listed in the manifest but missing")
        if got.size != entry.size:
            raise _Fail(f"member {entry.name}: size {got.size}, manifest says {entry.size}")
        if got.sha256 != entry.sha256:
            raise _Fail(f"member {entry.name}: sha256 {got.sha256[:16]}…, manifest says {entry.sha256[:16]}…")
    listed = {e.name for e in manifest.files} | {MANIFEST, SIGNATURE}
    extra = [name for name in members if name not in listed]
    if extra:
        raise _Fail(f"member {extra[0]} is not listed in the manifest")


def _check_timeline(manifest: Manifest, members: dict[str, _Member]) -> None:
    info = manifest.timeline
    if info is None:
        return
    data = members[TIMELINE].data if TIMELINE in members else None
    if data is None:
        raise _Fail("timeline.jsonl is missing or too large to check")
    try:
        records: list[dict[str, Any]] = [
            json.loads(line) for line in data.decode().splitlines() if line.strip()
        ]
        verify_chain(records)
    except TimelineBroken as err:
        raise _Fail(f"timeline: {err}") from None
    except ValueError:
        raise _Fail("timeline: a record is not JSON") from None
    if len(records) != info.records or chain_head(records) != info.head:
        raise _Fail(f"timeline: {len(records)} records ending in {chain_head(records)[:16]}…, manifest says "
                    f"{info.records} ending in {info.head[:16]}… (records dropped at the end?)")


def _check_inner(report: VerifyReport, manifest: Manifest, spool: Path, public_key: bytes | None,
                 decrypt: Callable[[str], bytes], work: Path) -> None:
    enc = manifest.encryption
    assert enc is not None
    try:
        key = decrypt(enc.wrapped_key)
        plain = work / "inner.tar.gz"
        with spool.open("rb") as fin:
            decrypt_stream(fin, plain, key, base64.b64decode(enc.nonce), base64.b64decode(enc.tag),
                           enc.aad.encode())
    except DecryptionFailed as err:
        raise _Fail(str(err)) from None
    inner = verify_bundle(plain, public_key)
    inner.path = report.path
    report.inner = inner
    if not inner.ok:
        raise _Fail(f"inside payload.enc: {inner.failure}")
    assert inner.manifest is not None
    if inner.manifest_sha256 != enc.inner_manifest_sha256:
        raise _Fail("inside payload.enc: the manifest is not the one the outer manifest names")
    same = ("incident_id", "phase", "created_at")
    if any(getattr(inner.manifest, f) != getattr(manifest, f) for f in same):
        raise _Fail("inside payload.enc: incident, phase or time differ from the outer manifest")
    report.checks.append("payload decrypted; inner bundle verified")


def verify_bundle(path: Path, public_key_pem_or_b64: bytes | None = None, *,
                  decrypt: Callable[[str], bytes] | None = None,
                  expected_sha256: str | None = None) -> VerifyReport:
    """Verify a bundle offline; the report names the first check that failed (see the module doc).

    Args:
        path: the bundle file.
        public_key_pem_or_b64: the contents of the key file `waguard evidence export-key` wrote (or a
            single PEM or base64 ed25519 key).
        decrypt: for an encrypted bundle, maps the wrapped data key to the raw key (needs Vault).
        expected_sha256: the bundle's digest as published in Slack or the Prefect artifact.
    """
    report = VerifyReport(path=Path(path))
    with tempfile.TemporaryDirectory(prefix="waguard-verify-") as tmp:
        work = Path(tmp)
        spool = work / PAYLOAD if decrypt is not None else None
        try:
            _verify(report, Path(path), public_key_pem_or_b64, decrypt, expected_sha256, spool, work)
            report.ok = True
        except _Fail as failure:
            report.failure = str(failure)
    return report


def _verify(
    report: VerifyReport,
    path: Path,
    public_key: bytes | None,
    decrypt: Callable[[str], bytes] | None,
    expected_sha256: str | None,
    spool: Path | None,
    work: Path,
) -> None:
    if expected_sha256 is not None:
        actual = file_sha256(path) if path.is_file() else "(no such file)"
        if actual != expected_sha256.removeprefix("sha256:"):
            raise _Fail(f"bundle file sha256 is {actual[:16]}…, expected {expected_sha256[:16]}…")
        report.checks.append("file sha256")
    members = _read_members(path, spool)
    report.checks.append("archive layout")
    manifest_bytes = members[MANIFEST].data or b""
    try:
        manifest = manifest_from_bytes(manifest_bytes)
    except (ValidationError, ValueError):
        raise _Fail("manifest.json is not a valid manifest") from None
    report.manifest, report.manifest_sha256 = manifest, members[MANIFEST].sha256
    report.encrypted = manifest.encryption is not None
    report.key_version = _check_signature(manifest, manifest_bytes, members[SIGNATURE].data, public_key)
    report.checks.append(f"signature (key {manifest.signing_key} v{report.key_version})")
    _check_files(manifest, members)
    report.checks.append(f"{len(manifest.files)} file hashes")
    _check_timeline(manifest, members)
    if manifest.timeline is not None:
        report.checks.append(f"timeline chain ({manifest.timeline.records} records)")
    if manifest.encryption is not None and decrypt is not None and spool is not None:
        if PAYLOAD not in members:
            raise _Fail("encrypted bundle has no payload.enc")
        _check_inner(report, manifest, spool, public_key, decrypt, work)
    elif manifest.encryption is not None:
        report.checks.append("payload.enc not opened (needs the data key from Vault)")
