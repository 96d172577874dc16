"""What a bundle says about itself: the manifest, the signature record, the re-chained timeline and the
public-key file format. Pure: no I/O beyond what callers hand in.

Bundle layout (a tar.gz; members in this order, so `manifest.json` is cheap to read first):

    manifest.json    FORMAT, incident, phase, created_at, every other member's sha256/size/source/
                     collected_at/redaction counts, the timeline's head, collection errors
    signature.json   {"key", "key_version", "algorithm": "ed25519", "signature": "vault:vN:..."} over
                     the exact bytes of manifest.json
    timeline.jsonl   the incident timeline, hash-chained (`waguard.playbook.timeline`)
    meta/*.json, intake/audit.jsonl, prefect/*.jsonl, slack/thread.jsonl, logs/*, extra.json

An encrypted bundle has the same three first members, but its manifest lists one file,
`payload.enc` (the plain bundle above, AES-256-GCM under a Vault data key), and an `encryption`
block with the wrapped key. Both the outer and the inner manifest are signed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from waguard.playbook.timeline import GENESIS, canonical, record_digest

FORMAT: Final = "waguard-evidence/1"
MANIFEST: Final = "manifest.json"
SIGNATURE = "signature.json"
TIMELINE = "timeline.jsonl"
PAYLOAD = "payload.enc"
RESERVED = (MANIFEST, SIGNATURE)
Phase = Literal["open", "close"]
_FROZEN = ConfigDict(frozen=True, extra="forbid")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,120}){0,3}$")


class FileEntry(BaseModel):
    """One member of the bundle as the manifest records it."""

    model_config = _FROZEN

    name: str
    sha256: str
    size: int
    source: str = Field(description="Where it came from: 'meta:templates', 'log:/var/log/app.log', ...")
    collected_at: str
    redactions: dict[str, int] = Field(default_factory=dict)
    note: str = ""


class TimelineInfo(BaseModel):
    """How the bundle's timeline relates to the incident's own."""

    model_config = _FROZEN

    records: int
    head: str = Field(description="Digest of the bundle timeline's last record (GENESIS when empty).")
    source_head: str = Field(description="Digest of the incident timeline's last record as read.")
    rechained: bool = Field(description="Redaction changed a record, so the chain was rebuilt.")
    redacted_seqs: list[int] = Field(default_factory=list)


class Encryption(BaseModel):
    """How `payload.enc` was encrypted; only Vault can unwrap `wrapped_key`."""

    model_config = _FROZEN

    algorithm: Literal["AES-256-GCM"] = "AES-256-GCM"
    transit_key: str
    key_version: int
    wrapped_key: str = Field(description="The data key, encrypted by the Vault transit key (vault:vN:...).")
    nonce: str = Field(description="base64, 12 bytes")
    tag: str = Field(description="base64, 16 bytes")
    aad: str
    inner_manifest_sha256: str


class Manifest(BaseModel):
    """manifest.json."""

    model_config = _FROZEN

    format: Literal["waguard-evidence/1"] = FORMAT
    incident_id: str
    phase: Phase
    created_at: str
    signing_key: str
    business_id: str | None = Field(None, description="The business the run acted on (None: outer manifest).")
    waba_id: str | None = Field(None, description="The WABA the run acted on, whose state the bundle holds.")
    files: list[FileEntry]
    timeline: TimelineInfo | None = None
    redaction: dict[str, Any] = Field(default_factory=dict)
    errors: list[str] = Field(default_factory=list, description="Sources that could not be collected.")
    retention_days: int = 365
    encryption: Encryption | None = None

    def to_bytes(self) -> bytes:
        """The exact bytes that are signed and stored (canonical JSON, one line)."""
        return canonical(self.model_dump(mode="json"))


class SignatureRecord(BaseModel):
    """signature.json."""

    model_config = _FROZEN

    key: str
    key_version: int
    algorithm: Literal["ed25519"] = "ed25519"
    signature: str = Field(description="Vault's 'vault:vN:<base64>' signature of manifest.json's bytes.")
    signed: Literal["manifest.json"] = MANIFEST

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.signature.split(":", 2)[2], validate=True)


class BundleRef(BaseModel):
    """What a playbook keeps of a bundle: where it is and its digests. No secret, no PII."""

    model_config = _FROZEN

    path: str
    sha256: str = Field(description="SHA-256 of the whole bundle file.")
    manifest_sha256: str = Field(description="SHA-256 of the signed manifest.json.")
    key_version: int
    phase: Phase

    def summary_line(self) -> str:
        """One line for the incident's Slack summary."""
        return (f"Evidence ({self.phase}): `{self.path}` sha256 `{self.sha256}` "
                f"(manifest {self.manifest_sha256[:16]}…, key v{self.key_version})")


def safe_member_name(name: str) -> bool:
    """A relative path of at most 4 plain parts: nothing absolute, no `..`, no odd characters."""
    return bool(_SAFE_NAME.match(name)) and ".." not in name.split("/")


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def rechain(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with `prev` recomputed so they chain again (after redaction changed some). Pure.

    `seq` is kept: records are never dropped or reordered by redaction.
    """
    prev = GENESIS
    out = []
    for record in records:
        fixed = {**record, "prev": prev}
        out.append(fixed)
        prev = record_digest(fixed)
    return out


def chain_head(records: list[dict[str, Any]]) -> str:
    """Digest of the last record, GENESIS for an empty timeline."""
    return record_digest(records[-1]) if records else GENESIS


# --- public-key files ---------------------------------------------------------------------------

_PEM_BLOCK = re.compile(r"(?:#[^\n]*key_version=(?P<version>\d+)[^\n]*\n)?"
                        r"(?P<pem>-----BEGIN PUBLIC KEY-----\s[A-Za-z0-9+/=\s]+?-----END PUBLIC KEY-----)")


def format_key_file(key: str, keys: dict[int, str]) -> str:
    """PEM public keys, each preceded by a `# <key> key_version=N` line, oldest first.

    Every version is written so bundles signed before a key rotation still verify.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    parts = []
    for version in sorted(keys):
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(keys[version]))
        pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
        parts.append(f"# waguard evidence signing key {key} key_version={version}\n{pem}")
    return "".join(parts)


def parse_key_file(data: bytes) -> dict[int | None, bytes]:
    """Raw 32-byte ed25519 public keys from a key file: labelled PEM blocks (from `format_key_file`),
    a single PEM, or a single base64 key as Vault prints it. An unlabelled key is under `None`.

    Raises:
        ValueError: nothing in `data` is an ed25519 public key.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    text = data.decode("ascii", errors="replace")
    found: dict[int | None, bytes] = {}
    for m in _PEM_BLOCK.finditer(text):
        public = load_pem_public_key(m.group("pem").encode())
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError("public key file holds a key that is not ed25519")
        version = int(m.group("version")) if m.group("version") else None
        found[version] = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    if found:
        return found
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError("public key file holds no ed25519 public key (PEM or base64 expected)")
    return {None: raw}


def manifest_from_bytes(data: bytes) -> Manifest:
    """Parse manifest.json (ValueError / ValidationError when it is not one)."""
    return Manifest.model_validate(json.loads(data))
