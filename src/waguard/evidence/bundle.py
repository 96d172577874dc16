"""Writing a bundle: collect and redact every source, sign the manifest with Vault transit, pack a tar.gz,
optionally encrypt it under a fresh Vault data key, and store it in the evidence directory.

What needs Vault: the redaction key and secret values (to redact), signing, the data key (to
encrypt) and the public keys (exported next to the bundles). Verification needs none of it except
`decrypt_data_key` to look inside an encrypted bundle (see verify.py).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import tarfile
from datetime import datetime
from pathlib import Path

from waguard.evidence import collect
from waguard.evidence.collect import EvidenceSources
from waguard.evidence.crypto import encrypt_file
from waguard.evidence.manifest import (
    FORMAT,
    MANIFEST,
    PAYLOAD,
    SIGNATURE,
    BundleRef,
    Encryption,
    FileEntry,
    Manifest,
    Phase,
    SignatureRecord,
    format_key_file,
    sha256_hex,
)
from waguard.evidence.redact import Counts, known_ids
from waguard.evidence.stream import Staging, file_sha256
from waguard.playbook.timeline import INCIDENT_ID, canonical, now_iso
from waguard.settings import EvidenceSettings
from waguard.vault.client import VaultClient

BUNDLE_SUFFIX = ".tar.gz"


def incident_dir(root: Path, incident_id: str) -> Path:
    """Where an incident's bundles live (the incident id with ':' made file-system safe).

    Raises:
        ValueError: the id is not a valid incident id (so it can never name a path outside `root`).
    """
    if not INCIDENT_ID.match(incident_id):
        raise ValueError("incident_id must be 3-128 characters of letters, digits and . _ : -")
    return root / incident_id.replace(":", "_")


def bundle_name(created_at: str, phase: Phase) -> str:
    """`20250101T120000.123Z-open-1a2b3c.tar.gz`: sorts by time; the suffix keeps two runs apart."""
    stamp = datetime.fromisoformat(created_at).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
    return f"{stamp}-{phase}-{secrets.token_hex(3)}{BUNDLE_SUFFIX}"


def key_file_path(settings: EvidenceSettings, key: str) -> Path:
    """The default public-key file: written by `export-key` and refreshed by every bundle."""
    return settings.dir / f"{key}.pub.pem"


def write_tar(dst: Path, head: list[tuple[str, bytes]], members: list[tuple[str, Path]], *,
              mtime: float, level: int) -> None:
    """A tar.gz of in-memory `head` members, then staged files streamed from disk, in that order."""
    import io

    def info(name: str, size: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = size, mtime, 0o600, 0, 0, "", ""
        return ti

    with tarfile.open(dst, "w:gz", compresslevel=level, format=tarfile.PAX_FORMAT) as tar:
        for name, data in head:
            tar.addfile(info(name, len(data)), io.BytesIO(data))
        for name, path in members:
            with path.open("rb") as f:
                tar.addfile(info(name, path.stat().st_size), f)


async def _sign(vault: VaultClient, key: str, manifest: bytes) -> bytes:
    sig = await vault.sign(key, manifest)
    return canonical(
        SignatureRecord(key=key, key_version=sig.key_version, signature=sig.signature).model_dump()
    )


async def export_public_keys(vault: VaultClient, key: str, path: Path) -> Path:
    """Write every version's public key of transit key `key` to `path` (PEM, labelled by version)."""
    text = format_key_file(key, await vault.public_keys(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary name of its own: runs in other processes refresh the same file at the same moment.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


async def _collect_all(sources: EvidenceSources, phase: Phase, created_at: str, signing_key: str,
                       staging: Staging, vault: VaultClient, settings: EvidenceSettings) -> Manifest:
    """Every source, redacted into `staging`; the manifest that lists them (not yet signed)."""
    errors: list[str] = []
    redactor = await collect.load_redactor(vault, settings, sources.policy)
    state = {}
    if sources.graph is not None:
        state = await collect.fetch_meta_state(sources.graph, sources.waba_id, sources.business_id, errors)
    ids = known_ids(state) | {i for i in (sources.waba_id, sources.business_id) if i.isdigit()}
    redactor = redactor.with_known_ids(ids)
    collect.collect_meta(staging, state, redactor)
    timeline = collect.collect_timeline(staging, sources.incident, redactor)
    # File work runs in a thread: redacting a 100 MB log must not stall the flow's event loop.
    await asyncio.to_thread(collect.collect_audit, staging, sources.intake_audit, sources.incident_id,
                            sources.flow_run_ids, redactor, errors, collect.audit_since(sources.incident))
    await collect.collect_flow_logs(staging, sources.flow_run_ids, redactor, errors)
    collect.collect_slack(staging, sources.slack_messages, redactor)
    await asyncio.to_thread(collect.collect_logs, staging, sources.policy.log_globs, settings.dir, redactor,
                            errors, sources.incident_id)
    collect.collect_extra(staging, sources.extra, redactor)
    counts = Counts()
    return Manifest(
        incident_id=sources.incident_id, phase=phase, created_at=created_at, signing_key=signing_key,
        business_id=sources.business_id, waba_id=sources.waba_id, files=list(staging.entries),
        timeline=timeline,
        errors=[redactor.text(e, counts) for e in errors], retention_days=sources.policy.retention_days,
        redaction={"phones": "HMAC-SHA256 of the digits, keyed by the Vault secret at redaction_key_path",
                   "redaction_key_path": settings.redaction_key_path,
                   "secret_prefixes": list(settings.secret_prefixes),
                   "secret_values_too_short": redactor.too_short,
                   "message_bodies": "kept" if sources.policy.keep_message_bodies else "dropped",
                   "known_ids_kept": len(ids)})


async def write_bundle(sources: EvidenceSources, phase: Phase, *, vault: VaultClient,
                       settings: EvidenceSettings, signing_key: str) -> BundleRef:
    """Collect, redact, sign and store one evidence bundle; return where it is and its digests.

    Raises:
        VaultError: Vault could not give the secrets to redact, the signature or a data key. Nothing
            is written then: unredacted or unsigned evidence is worse than none.
    """
    started = now_iso()
    out_dir = incident_dir(settings.dir, sources.incident_id)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Staging(settings.dir)
    try:
        manifest = await _collect_all(sources, phase, started, signing_key, staging, vault, settings)
        manifest_bytes = manifest.to_bytes()
        signature = await _sign(vault, signing_key, manifest_bytes)
        mtime = datetime.fromisoformat(started).timestamp()
        plain = staging.scratch("bundle.tar.gz")
        members = [(e.name, staging.file(e.name)) for e in manifest.files]
        await asyncio.to_thread(write_tar, plain, [(MANIFEST, manifest_bytes), (SIGNATURE, signature)],
                                members, mtime=mtime, level=6)
        final, outer_bytes = plain, manifest_bytes
        if settings.encrypt:
            final, outer_bytes, signature = await _encrypt(plain, manifest, manifest_bytes, staging, vault,
                                                           settings, signing_key, mtime)
        # Refresh the exported public keys before the bundle appears, so a bundle is never there
        # without the key that verifies it (and a Vault failure here leaves no half-done state).
        await export_public_keys(vault, signing_key, key_file_path(settings, signing_key))
        target = out_dir / bundle_name(started, phase)
        os.chmod(final, 0o600)
        os.replace(final, target)
        key_version = SignatureRecord.model_validate_json(signature).key_version
        return BundleRef(path=str(target), sha256=await asyncio.to_thread(file_sha256, target),
                         manifest_sha256=sha256_hex(outer_bytes), key_version=key_version, phase=phase)
    finally:
        staging.cleanup()


async def _encrypt(plain: Path, inner: Manifest, inner_bytes: bytes, staging: Staging, vault: VaultClient,
                   settings: EvidenceSettings, signing_key: str, mtime: float) -> tuple[Path, bytes, bytes]:
    """Wrap the plain bundle: payload.enc under a fresh data key, and a signed outer manifest that lists
    it with the wrapped key, so the outer layer verifies offline without the key."""
    data_key = await vault.generate_data_key(settings.encryption_key)
    aad = f"{FORMAT}|{inner.incident_id}|{inner.phase}|{inner.created_at}"
    payload = staging.scratch(PAYLOAD)
    key = base64.b64decode(data_key.plaintext.get_secret_value())
    nonce, tag = await asyncio.to_thread(encrypt_file, plain, payload, key, aad.encode())
    del key  # the plaintext key lives no longer than the encryption
    entry = FileEntry(name=PAYLOAD, sha256=await asyncio.to_thread(file_sha256, payload),
                      size=payload.stat().st_size, source="bundle:encrypted", collected_at=inner.created_at)
    encryption = Encryption(transit_key=settings.encryption_key, key_version=data_key.key_version,
                            wrapped_key=data_key.ciphertext, nonce=base64.b64encode(nonce).decode(),
                            tag=base64.b64encode(tag).decode(), aad=aad,
                            inner_manifest_sha256=sha256_hex(inner_bytes))
    # The outer manifest names no source and no error: those stay inside the ciphertext.
    outer = inner.model_copy(update={"files": [entry], "timeline": None, "errors": [], "redaction": {},
                                     "encryption": encryption})
    outer_bytes = outer.to_bytes()
    signature = await _sign(vault, signing_key, outer_bytes)
    final = staging.scratch("bundle.enc.tar.gz")
    # Ciphertext does not compress: level 1 only keeps the format the same as a plain bundle's.
    await asyncio.to_thread(write_tar, final, [(MANIFEST, outer_bytes), (SIGNATURE, signature)],
                            [(PAYLOAD, payload)], mtime=mtime, level=1)
    return final, outer_bytes, signature
