"""Evidence bundles against a real OpenBao: written, signed, verified offline, and every tampering caught.

The Meta state comes from a GraphClient over an httpx.MockTransport answering like Graph (the Meta
simulator was not ready when this was written). Secrets are planted in Vault under the test's own
prefix, and in the log, the Meta answers, the Slack thread and the audit log, in raw and encoded forms.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import secrets
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from tests.fixtures.vault import OpenBao
from waguard.evidence import EvidenceSources, export_public_keys, verify_bundle, write_bundle
from waguard.evidence.manifest import MANIFEST, SIGNATURE, TIMELINE, Manifest, sha256_hex
from waguard.intake.audit import FileAuditReader, stamp
from waguard.meta.client import GraphClient
from waguard.playbook.policy import EvidencePolicy
from waguard.playbook.timeline import IncidentRecord, canonical
from waguard.settings import EvidenceSettings
from waguard.vault.client import VaultClient

KEY = "waguard-evidence"
WABA, BUSINESS, PN_ID = "3000000001", "2000000001", "106853218861309"
PHONES = ["+15550100001", "+44 20 7946 0958", "+1 (555) 010-0002"]
CUSTOMER_WA_ID = "15550109999"


def digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def graph_answers(app_secret: str) -> Callable[[httpx.Request], httpx.Response]:
    """A Graph stand-in: the six list edges evidence reads, one page each."""
    data: dict[str, list[dict[str, Any]]] = {
        f"/{WABA}/phone_numbers": [{"id": PN_ID, "display_phone_number": PHONES[0], "status": "CONNECTED",
                                    "verified_name": "Acme"}],
        f"/{WABA}/message_templates": [{"id": "880000000000001", "name": "promo", "status": "APPROVED",
                                        "components": [{"type": "BODY", "text": "Call +1 555 010 0003 now"}]}],
        f"/{BUSINESS}/business_users": [{"id": "550000000000001", "name": "Alice", "email": "alice@acme.example",
                                         "role": "ADMIN"},
                                        {"id": "550000000000002", "name": "Mallory", "role": "ADMIN",
                                         "email": "mallory@evil.example"}],
        f"/{BUSINESS}/system_users": [{"id": "7000000002", "name": "ci-bot", "role": "ADMIN"}],
        f"/{WABA}/assigned_users": [{"id": "550000000000002", "name": "Mallory", "tasks": ["MANAGE"]}],
        # An attacker's override URL that (carelessly) carries our app secret as a query parameter.
        f"/{WABA}/subscribed_apps": [{"whatsapp_business_api_data": {"id": "1000000001", "name": "app"},
                                      "override_callback_uri": f"https://evil.example/hook?s={app_secret}"}],
    }

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v23.0")
        if path in data:
            return httpx.Response(200, json={"data": data[path]})
        return httpx.Response(404, json={"error": {"message": "unknown path", "code": 100}})

    return answer


@dataclass
class Case:
    """One incident's sources, with the secrets and phone numbers planted in them."""

    sources: EvidenceSources
    settings: EvidenceSettings
    secrets: list[str]
    phones: list[str]


async def plant(vault: VaultClient, prefix: str, root: Path, *, encrypt: bool = False) -> Case:
    old, app_secret, token = (secrets.token_urlsafe(18) for _ in range(3))
    await vault.write_secret(f"{prefix}/meta/app-secret", SecretStr(old))
    await vault.write_secret(f"{prefix}/meta/app-secret", SecretStr(app_secret))  # old stays a version
    await vault.write_secret(f"{prefix}/meta/system-user-token", SecretStr("EAAB" + token))
    planted = [old, app_secret, "EAAB" + token]
    settings = EvidenceSettings(dir=root / "evidence", encrypt=encrypt, redaction_key_path=f"{prefix}/redaction-key",
                                secret_prefixes=[f"{prefix}/meta/"])
    ci_log = root / "ci.log"
    leaked = "EAAB" + token
    ci_log.write_text("\n".join([
        "2025-05-01T10:00:00Z step=build status=ok",
        f"2025-05-01T10:00:01Z export META_APP_SECRET={old}   # oops",
        f"2025-05-01T10:00:02Z curl -H 'Authorization: Basic {base64.b64encode(f'app:{app_secret}'.encode()).decode()}'",
        f"2025-05-01T10:00:03Z GET /v23.0/{PN_ID}/messages?access_token={quote(leaked, safe='')}",
        f"2025-05-01T10:00:04Z debug token hex={leaked.encode().hex()} to={PHONES[1]}",
        '{"entry":[{"changes":[{"value":{"messages":[{"from":"' + CUSTOMER_WA_ID + '","id":"wamid.1",'
        '"timestamp":"1714557600","type":"text","text":{"body":"my card is 4111 1111 1111 1111"}}]}}]}]}',
        f"2025-05-01T10:00:05Z contact ops@acme.example or {PHONES[2]}",
    ]) + "\n")
    audit = root / "audit.jsonl"
    now = stamp(time.time())  # an entry long before the incident's window (d0) is not read
    audit.write_text(
        json.dumps({"at": "2025-05-01T10:00:00Z", "source": "github", "delivery_id": "d0", "outcome": "started",
                    "body_sha256": "ef" * 32, "incident_key": "INC-7", "run_id": None}) + "\n"
        + json.dumps({"at": now, "source": "github", "delivery_id": "d1", "outcome": "started",
                      "body_sha256": "ab" * 32, "incident_key": "INC-7", "run_id": None}) + "\n"
        + json.dumps({"at": now, "source": "github", "delivery_id": "d2", "outcome": "started",
                      "body_sha256": "cd" * 32, "incident_key": "INC-OTHER", "run_id": None}) + "\n" + "not json\n")
    incident = IncidentRecord(root / "incidents", "INC-7")
    incident.append("open", "started", "leaked_secret run", actor="U0ONCALL")
    incident.append("notify", "done", f"paged on-call at {PHONES[0]}")  # redaction will re-chain this one
    graph = GraphClient(base_url="https://graph.test", version="v23.0", token=SecretStr("EAAB" + token),
                        transport=httpx.MockTransport(graph_answers(app_secret)), max_retries=0)
    sources = EvidenceSources(
        incident_id="INC-7", incident=incident, graph=graph, waba_id=WABA, business_id=BUSINESS,
        policy=EvidencePolicy(log_globs=[str(ci_log), str(root / "missing-*.log")], retention_days=30),
        intake_audit=FileAuditReader(audit),
        slack_messages=[{"ts": "1714557600.000100", "user": "U0ONCALL",
                         "text": f"customer {PHONES[2]} reports spam; secret was {app_secret}"}],
        extra={"alert": {"source": "github", "secret_type": "meta_app_secret", "email": "dev@acme.example"}})
    return Case(sources, settings, planted, [*PHONES, CUSTOMER_WA_ID])


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def repack(members_: dict[str, bytes], dst: Path) -> Path:
    with tarfile.open(dst, "w:gz") as tar:
        for name, data in members_.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dst


def assert_clean(blob: bytes, case: Case) -> None:
    text = blob.decode("utf-8", errors="replace")
    for secret in case.secrets:
        for form in (secret, base64.b64encode(secret.encode()).decode().rstrip("="), quote(secret, safe=""),
                     secret.encode().hex()):
            assert form not in text
    for phone in case.phones:
        assert phone not in text and digits(phone) not in text
    assert "4111 1111" not in text and "mallory@evil" not in text


@pytest.fixture(scope="module")
def written(openbao: OpenBao, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes, Case]:
    """One open and one close bundle of the same incident, and the exported public key."""

    async def go() -> tuple[Path, Path, bytes, Case]:
        vault = VaultClient.from_settings(openbao.settings)
        try:
            root = tmp_path_factory.mktemp("evidence")
            case = await plant(vault, f"tests/evidence-{secrets.token_hex(4)}", root)
            opened = await write_bundle(case.sources, "open", vault=vault, settings=case.settings, signing_key=KEY)
            closed = await write_bundle(case.sources, "close", vault=vault, settings=case.settings, signing_key=KEY)
            key = await export_public_keys(vault, KEY, root / "key.pem")
            assert opened.sha256 == sha256_hex(Path(opened.path).read_bytes())
            return Path(opened.path), Path(closed.path), key.read_bytes(), case
        finally:
            vault.close()

    return asyncio.run(go())


def test_bundle_verifies_offline_and_lists_every_source(written: tuple[Path, Path, bytes, Case]) -> None:
    opened, closed, key, _ = written
    for path in (opened, closed):
        report = verify_bundle(path, key)
        assert report.ok, report.failure
    report = verify_bundle(opened, key)
    assert report.manifest is not None and report.manifest.phase == "open"
    names = [f.name for f in report.manifest.files]
    assert {"meta/phone_numbers.json", "meta/templates.json", "meta/business_users.json", "meta/system_users.json",
            "meta/assigned_users.json", "meta/subscribed_apps.json", TIMELINE, "intake/audit.jsonl",
            "slack/thread.jsonl", "logs/000-ci.log", "extra.json"} <= set(names)
    assert any("missing-*.log" in e for e in report.manifest.errors)
    assert report.manifest.retention_days == 30


def test_nothing_planted_survives_in_any_member(written: tuple[Path, Path, bytes, Case]) -> None:
    opened, _, _, case = written
    content = members(opened)
    for name, blob in content.items():
        assert_clean(blob, case)
    log = content["logs/000-ci.log"].decode()
    assert log.count("[secret:") == 4 and "[body dropped]" in log and "o***@acme.example" in log
    assert f"/v23.0/{PN_ID}/messages" in log  # a known Graph id stays readable
    audit = [json.loads(line) for line in content["intake/audit.jsonl"].splitlines()]
    assert [a["delivery_id"] for a in audit] == ["d1"]  # only this incident's entries
    users = json.loads(content["meta/business_users.json"])
    assert [u["email"] for u in users] == ["a***@acme.example", "m***@evil.example"]


def test_timeline_is_rechained_when_redaction_changes_a_record(written: tuple[Path, Path, bytes, Case]) -> None:
    opened, _, _, case = written
    manifest = Manifest.model_validate_json(members(opened)[MANIFEST])
    assert manifest.timeline is not None
    assert manifest.timeline.rechained and manifest.timeline.redacted_seqs == [1]
    assert manifest.timeline.source_head != manifest.timeline.head


def test_close_bundle_sees_more_than_open(written: tuple[Path, Path, bytes, Case]) -> None:
    opened, closed, key, _ = written
    assert verify_bundle(closed, key).manifest.phase == "close"  # type: ignore[union-attr]
    assert opened.parent == closed.parent and opened != closed


TAMPERABLE = [MANIFEST, SIGNATURE, TIMELINE, "meta/templates.json", "logs/000-ci.log", "intake/audit.jsonl",
              "slack/thread.jsonl", "extra.json"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(TAMPERABLE), where=st.floats(0, 1), delta=st.integers(1, 255))
def test_changing_any_byte_of_any_member_fails(written: tuple[Path, Path, bytes, Case], tmp_path_factory,
                                               name: str, where: float, delta: int) -> None:
    opened, _, key, _ = written
    content = members(opened)
    data = bytearray(content[name])
    i = min(int(where * len(data)), len(data) - 1)
    data[i] = (data[i] + delta) % 256
    bad = repack({**content, name: bytes(data)}, tmp_path_factory.mktemp("t") / "bad.tar.gz")
    report = verify_bundle(bad, key)
    assert not report.ok and report.failure


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0, 1), delta=st.integers(1, 255))
def test_changing_any_byte_of_the_file_fails_against_its_published_digest(
        written: tuple[Path, Path, bytes, Case], tmp_path_factory, where: float, delta: int) -> None:
    opened, _, key, _ = written
    data = bytearray(opened.read_bytes())
    i = min(int(where * len(data)), len(data) - 1)
    data[i] = (data[i] + delta) % 256
    bad = tmp_path_factory.mktemp("t") / "bad.tar.gz"
    bad.write_bytes(bytes(data))
    report = verify_bundle(bad, key, expected_sha256=sha256_hex(opened.read_bytes()))
    assert not report.ok and "sha256" in (report.failure or "")


def timeline_records(content: dict[str, bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in content[TIMELINE].splitlines()]


def with_timeline(content: dict[str, bytes], records: list[dict[str, Any]]) -> dict[str, bytes]:
    return {**content, TIMELINE: b"".join(canonical(r) + b"\n" for r in records)}


@pytest.mark.parametrize("change", ["swap", "drop-first", "drop-last"])
def test_reordering_or_dropping_a_timeline_record_fails(written, tmp_path: Path, change: str) -> None:
    opened, _, key, _ = written
    content = members(opened)
    records = timeline_records(content)
    changed = {"swap": records[::-1], "drop-first": records[1:], "drop-last": records[:-1]}[change]
    report = verify_bundle(repack(with_timeline(content, changed), tmp_path / "bad.tar.gz"), key)
    assert not report.ok and "timeline.jsonl" in (report.failure or "")


def test_a_forger_who_fixes_the_manifest_hashes_still_fails_on_the_signature(written, tmp_path: Path) -> None:
    opened, _, key, _ = written
    content = members(opened)
    records = timeline_records(content)[:-1]
    forged = with_timeline(content, records)
    manifest = Manifest.model_validate_json(content[MANIFEST])
    files = [f.model_copy(update={"sha256": sha256_hex(forged[f.name]), "size": len(forged[f.name])})
             for f in manifest.files]
    forged[MANIFEST] = manifest.model_copy(update={"files": files}).to_bytes()
    report = verify_bundle(repack(forged, tmp_path / "bad.tar.gz"), key)
    assert not report.ok and "signature does not match" in (report.failure or "")


def test_swapping_in_another_bundles_signature_fails(written, tmp_path: Path) -> None:
    opened, closed, key, _ = written
    swapped = {**members(opened), SIGNATURE: members(closed)[SIGNATURE]}
    report = verify_bundle(repack(swapped, tmp_path / "bad.tar.gz"), key)
    assert not report.ok and "signature does not match" in (report.failure or "")


def test_a_signature_claiming_another_key_version_fails(written, tmp_path: Path) -> None:
    opened, _, key, _ = written
    content = members(opened)
    sig = json.loads(content[SIGNATURE])
    sig["key_version"] += 1
    report = verify_bundle(repack({**content, SIGNATURE: canonical(sig)}, tmp_path / "bad.tar.gz"), key)
    assert not report.ok and "key version" in (report.failure or "")


@pytest.mark.parametrize("change", ["drop-member", "add-member", "reorder-head"])
def test_dropping_adding_or_reordering_members_fails(written, tmp_path: Path, change: str) -> None:
    opened, _, key, _ = written
    content = members(opened)
    if change == "drop-member":
        content.pop("extra.json")
    elif change == "add-member":
        content["logs/999-planted.log"] = b"nothing to see\n"
    else:
        content = {SIGNATURE: content.pop(SIGNATURE), **content}
    report = verify_bundle(repack(content, tmp_path / "bad.tar.gz"), key)
    assert not report.ok


def test_wrong_or_missing_public_key_fails(written) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    opened, _, _, _ = written
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert "signature does not match" in (verify_bundle(opened, other).failure or "")
    assert "no public key" in (verify_bundle(opened, None).failure or "")


def test_not_a_bundle_fails_with_a_clear_name(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not gzip")
    assert "not a readable tar.gz" in (verify_bundle(junk, b"").failure or "")



async def test_encrypted_bundle_verifies_outside_offline_and_inside_with_vaults_key(
        vault: VaultClient, vault_prefix: str, tmp_path: Path) -> None:
    case = await plant(vault, vault_prefix, tmp_path, encrypt=True)
    ref = await write_bundle(case.sources, "open", vault=vault, settings=case.settings, signing_key=KEY)
    key = (await export_public_keys(vault, KEY, tmp_path / "key.pem")).read_bytes()
    content = members(Path(ref.path))
    assert list(content) == [MANIFEST, SIGNATURE, "payload.enc"]
    outer = Manifest.model_validate_json(content[MANIFEST])
    assert outer.encryption is not None and outer.encryption.wrapped_key.startswith("vault:v")
    assert outer.errors == [] and outer.timeline is None  # nothing about the contents outside
    assert_clean(Path(ref.path).read_bytes(), case)

    offline = verify_bundle(Path(ref.path), key)
    assert offline.ok and offline.encrypted and offline.inner is None
    assert any("not opened" in c for c in offline.checks)

    wrapped_to_key: dict[str, bytes] = {}
    for wrapped in {outer.encryption.wrapped_key}:  # unwrap with Vault first, then verify offline
        wrapped_to_key[wrapped] = base64.b64decode((await vault.decrypt_data_key(
            case.settings.encryption_key, wrapped)).get_secret_value())
    full = verify_bundle(Path(ref.path), key, decrypt=wrapped_to_key.__getitem__)
    assert full.ok, full.failure
    assert full.inner is not None and full.inner.manifest is not None
    assert {f.name for f in full.inner.manifest.files} >= {TIMELINE, "logs/000-ci.log"}

    # A changed ciphertext fails on the outer hash without any key; a wrong key fails to decrypt.
    data = bytearray(content["payload.enc"])
    data[len(data) // 2] ^= 1
    bad = repack({**content, "payload.enc": bytes(data)}, tmp_path / "bad.tar.gz")
    assert "payload.enc" in (verify_bundle(bad, key).failure or "")
    wrong = verify_bundle(Path(ref.path), key, decrypt=lambda _: secrets.token_bytes(32))
    assert not wrong.ok and "does not decrypt" in (wrong.failure or "")


async def test_vault_down_means_no_bundle_rather_than_an_unredacted_one(openbao: OpenBao, tmp_path: Path) -> None:
    from waguard.settings import VaultSettings
    from waguard.vault.errors import VaultError

    token_file = tmp_path / "token"
    token_file.write_text("not-a-valid-token")
    denied = VaultClient.from_settings(VaultSettings(addr=openbao.addr, token_file=token_file))
    try:
        case_vault = VaultClient.from_settings(openbao.settings)
        case = await plant(case_vault, f"tests/down-{secrets.token_hex(4)}", tmp_path)
        case_vault.close()
        with pytest.raises(VaultError):
            await write_bundle(case.sources, "open", vault=denied, settings=case.settings, signing_key=KEY)
    finally:
        denied.close()
    assert not list((tmp_path / "evidence").rglob("*.tar.gz"))
    assert not [p for p in (tmp_path / "evidence").iterdir() if p.name.startswith(".staging")]

