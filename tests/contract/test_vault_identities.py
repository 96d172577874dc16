"""Least privilege in Vault, against the session's real OpenBao (tests/fixtures/vault.py).

Each identity's AppRole role (waguard.vault.identities) is set up with the settings' paths moved under
this test's own prefix, so the session's other tests and the local stack are not touched. Each role
does its job through waguard's own code paths and is refused just outside it; a secret id is rotated
under a client that keeps running.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fixtures.vault import EVIDENCE_KEY, OpenBao, assert_no_leak
from waguard.errors import ConfigError
from waguard.evidence.collect import load_redactor
from waguard.evidence.redact import Counts
from waguard.playbook.policy import EvidencePolicy
from waguard.settings import Settings
from waguard.vault.client import VaultClient
from waguard.vault.errors import VaultPermissionDenied
from waguard.vault.identities import (
    RoleLogin,
    login_settings,
    render_policies,
    role_name,
    rotate_secret_id,
    setup_identities,
)

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_policies_are_the_rendering_of_the_default_settings() -> None:
    """deploy/vault/*.hcl is what production loads; it must say what waguard's code needs."""
    for identity, text in render_policies(Settings(_env_file=None)).items():  # type: ignore[call-arg]
        shipped = ROOT / "deploy" / "vault" / f"{role_name(identity)}.hcl"
        assert shipped.read_text() == text, f"{shipped} is stale: run python -m waguard.vault.identities"


def prefixed_settings(openbao: OpenBao, p: str) -> Settings:
    """Default settings with every Vault path moved under `p`."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        vault={"addr": openbao.addr, "token_file": openbao.settings.token_file, "evidence_key": EVIDENCE_KEY},
        meta={"token_path": f"{p}/meta/system-user-token", "app_secret_path": f"{p}/meta/app-secret"},
        slack={"bot_token_path": f"{p}/slack/bot-token", "signing_secret_path": f"{p}/slack/signing-secret"},
        intake={"alertmanager_token_path": f"{p}/intake/alertmanager-token",
                "github_secret_path": f"{p}/intake/github-webhook-secret",
                "grafana_secret_path": f"{p}/intake/grafana-hmac-secret",
                "meta_verify_token_path": f"{p}/intake/meta-verify-token",
                "rotation_window_path": f"{p}/waguard/app-secret-rotation"},
        evidence={"redaction_key_path": f"{p}/waguard/redaction-key",
                  "secret_prefixes": [f"{p}/meta/", f"{p}/slack/", f"{p}/intake/", f"{p}/waguard/"]},
    )


@pytest.fixture
def roles(openbao: OpenBao, vault: VaultClient, vault_prefix: str,
          tmp_path: Path) -> tuple[Settings, dict[str, RoleLogin], str]:
    settings = prefixed_settings(openbao, vault_prefix)
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    logins = setup_identities(vault.hvac_client, settings, tmp_path / "vault", prefix=prefix)
    return settings, logins, prefix  # type: ignore[return-value]


async def seed(vault: VaultClient, s: Settings) -> None:
    for path in (s.meta.token_path, s.meta.app_secret_path, s.slack.bot_token_path,
                 s.slack.signing_secret_path, s.intake.alertmanager_token_path, s.intake.github_secret_path,
                 s.intake.grafana_secret_path, s.intake.meta_verify_token_path):
        await vault.write_secret(path, SecretStr(secrets.token_hex(16)))


def as_identity(settings: Settings, login: RoleLogin) -> VaultClient:
    return VaultClient.from_settings(login_settings(settings.vault, login))


async def refused(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(VaultPermissionDenied):
        await call


async def test_the_intake_reads_what_it_verifies_with_and_writes_nothing(  # type: ignore[no-untyped-def]
        vault: VaultClient, roles) -> None:
    s, logins, _ = roles
    await seed(vault, s)
    async with as_identity(s, logins["intake"]) as intake:
        for path in (s.meta.app_secret_path, s.meta.token_path, s.slack.signing_secret_path,
                     s.intake.alertmanager_token_path, s.intake.github_secret_path,
                     s.intake.grafana_secret_path, s.intake.meta_verify_token_path):
            await intake.read_secret(path)
        await intake.read_secret(s.meta.app_secret_path, version=1)  # the previous one, in its window
        await refused(intake.write_secret(s.meta.token_path, SecretStr("forged-token")))
        await refused(intake.write_secret(s.meta.app_secret_path, SecretStr("forged-secret")))
        await refused(intake.write_secret(s.intake.rotation_window_path, SecretStr("{}")))
        await refused(intake.read_secret(s.slack.bot_token_path))
        await refused(intake.read_secret(s.evidence.redaction_key_path))
        await refused(intake.sign(EVIDENCE_KEY, b"manifest"))


async def test_a_playbook_rotates_tokens_but_not_the_app_secret_nor_reads_the_redaction_key(
        vault: VaultClient, roles) -> None:  # type: ignore[no-untyped-def]
    s, logins, _ = roles
    await seed(vault, s)
    await vault.write_secret(s.evidence.redaction_key_path, SecretStr(secrets.token_hex(32)))
    folder = s.meta.token_path.rsplit("/", 1)[0]
    async with as_identity(s, logins["playbook"]) as run:
        await run.read_secret(s.meta.token_path)
        await run.read_metadata(s.meta.app_secret_path)
        await run.read_secret(s.slack.bot_token_path)
        await run.read_secret(s.intake.alertmanager_token_path)  # the posture audit alerts the intake
        assert await run.write_secret(f"{folder}/messaging-token", SecretStr(secrets.token_hex(8))) == 1
        assert await run.write_secret(f"{folder}/two-step-pin", SecretStr("123456")) == 1
        await run.read_metadata(f"{folder}/two-step-pin")
        await run.write_secret(s.intake.rotation_window_path, SecretStr('{"previous_version": 1}'))
        await refused(run.write_secret(s.meta.app_secret_path, SecretStr("not-by-a-run")))
        await refused(run.read_secret(s.evidence.redaction_key_path))
        await refused(run.read_metadata(s.evidence.redaction_key_path))
        await refused(run.read_secret(s.slack.signing_secret_path))
        await refused(run.read_secret(s.intake.github_secret_path))
        await refused(run.list_paths(f"{folder}/"))
        await refused(run.sign(EVIDENCE_KEY, b"manifest"))
        await refused(run.rotate_key(EVIDENCE_KEY))


async def test_only_evidence_signing_uses_the_signing_key_and_it_cannot_overwrite_secrets(
        vault: VaultClient, roles) -> None:  # type: ignore[no-untyped-def]
    s, logins, _ = roles
    await seed(vault, s)
    token = (await vault.read_secret(s.meta.token_path)).value.get_secret_value()
    async with as_identity(s, logins["evidence"]) as evidence:
        # What write_bundle does: the redactor (redaction key created on first use, every secret
        # value under the prefixes), then the signature and the public keys.
        redactor = await load_redactor(evidence, s.evidence, EvidencePolicy())
        assert token not in redactor.text(f"leaked {token}", Counts())
        signature = await evidence.sign(EVIDENCE_KEY, b"manifest")
        assert signature.key_version >= 1 and await evidence.public_keys(EVIDENCE_KEY)
        await refused(evidence.write_secret(s.evidence.redaction_key_path, SecretStr("a-chosen-key")))
        await refused(evidence.write_secret(s.meta.token_path, SecretStr("x")))
        await refused(evidence.rotate_key(EVIDENCE_KEY))
        await refused(evidence.verify(EVIDENCE_KEY, b"manifest", signature.signature))
    for other in ("playbook", "intake", "drill"):
        async with as_identity(s, logins[other]) as client:
            await refused(client.sign(EVIDENCE_KEY, b"manifest"))
            await refused(client.generate_data_key(s.evidence.encryption_key))


async def test_the_drill_responder_writes_the_new_app_secret_and_signs_nothing(  # type: ignore[no-untyped-def]
        vault: VaultClient, roles) -> None:
    s, logins, _ = roles
    await seed(vault, s)
    async with as_identity(s, logins["drill"]) as drill:
        assert await drill.write_secret(s.meta.app_secret_path, SecretStr(secrets.token_hex(16))) == 2
        await drill.read_all_secret_values(s.evidence.secret_prefixes)
        await refused(drill.write_secret(s.meta.token_path, SecretStr("x")))
        await refused(drill.write_secret(s.evidence.redaction_key_path, SecretStr("x")))
        await refused(drill.sign(EVIDENCE_KEY, b"manifest"))


async def test_a_secret_id_rotates_under_a_running_client(  # type: ignore[no-untyped-def]
        vault: VaultClient, roles, tmp_path: Path) -> None:
    s, logins, prefix = roles
    await seed(vault, s)
    login = logins["intake"]
    old_copy = tmp_path / "old-secret-id"
    shutil.copy(login.secret_id_file, old_copy)
    old = old_copy.read_text()
    async with as_identity(s, login) as running:
        await running.read_secret(s.intake.alertmanager_token_path)
        first_token = running.hvac_client.token
        destroyed = await asyncio.to_thread(rotate_secret_id, vault.hvac_client, prefix + role_name("intake"),
                                            login.secret_id_file)
        assert destroyed == 1 and login.secret_id_file.read_text() != old
        await running.read_secret(s.intake.alertmanager_token_path)  # its token still works
        # The token ends (expiry, or an operator revokes it): the next call logs in with the new id.
        await asyncio.to_thread(running.hvac_client.auth.token.revoke_self)
        await running.read_secret(s.intake.alertmanager_token_path)
        assert running.hvac_client.token != first_token
    stale = login.__class__(login.identity, login.role_id, old_copy)
    async with as_identity(s, stale) as client:
        with pytest.raises(ConfigError) as err:
            await client.check()
    assert_no_leak(err.value, old)
