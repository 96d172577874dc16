"""VaultClient's logins and failures against a real OpenBao dev server (see tests/fixtures/vault.py):
token and AppRole authentication, the AppRole policy, an unavailable or sealed server, and never a
secret value in an error, a log or the dev server's output.

Every test works under its own `vault_prefix` or transit key, or seals and stops a dev server of its
own (`own_openbao`), so the tests share the session's server without seeing each other.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fixtures.vault import EVIDENCE_KEY, OpenBao, assert_no_leak, secret_value
from waguard.errors import ConfigError, Retryable
from waguard.local.processes import ChildProcess, free_port
from waguard.settings import VaultSettings
from waguard.vault import devserver
from waguard.vault.client import ENCRYPTION_KEY, VaultClient
from waguard.vault.errors import (
    VaultCasConflict,
    VaultError,
    VaultKeyError,
    VaultPermissionDenied,
    VaultSecretNotFound,
    VaultUnavailable,
)


@pytest.fixture
def own_openbao(tmp_path: Path) -> Iterator[tuple[ChildProcess, VaultSettings, str]]:
    """A second dev server this test may seal or stop; the session's server stays untouched."""
    root = secrets.token_urlsafe(24)
    port = free_port()
    server = devserver.dev_server(port=port, root_token=root, log_path=tmp_path / "openbao.log")
    server.start()
    (tmp_path / "token").write_text(root)
    try:
        yield server, VaultSettings(addr=f"http://127.0.0.1:{port}", token_file=tmp_path / "token"), root
    finally:
        server.stop()


# -- authentication -----------------------------------------------------------------------------


async def test_approle_login_reads_a_seeded_secret_and_signs(
        vault: VaultClient, vault_prefix: str, openbao: OpenBao) -> None:
    seeded = secret_value()
    await vault.write_secret(f"{vault_prefix}/meta/token", seeded)

    async with VaultClient.from_settings(openbao.approle_settings) as app:
        await app.check()
        assert app.hvac_client.token and app.hvac_client.token != openbao.root_token.get_secret_value()
        got = await app.read_secret(f"{vault_prefix}/meta/token")
        assert got.value.get_secret_value() == seeded.get_secret_value()
        assert await app.write_secret(f"{vault_prefix}/meta/token", secret_value()) == 2
        signature = await app.sign(EVIDENCE_KEY, b"evidence")
        assert await app.verify(EVIDENCE_KEY, b"evidence", signature.signature)
        data_key = await app.generate_data_key(ENCRYPTION_KEY)
        assert (await app.decrypt_data_key(ENCRYPTION_KEY, data_key.ciphertext)).get_secret_value() == \
            data_key.plaintext.get_secret_value()
        assert await app.list_paths(vault_prefix) == [f"{vault_prefix}/meta/token"]


async def test_approle_policy_denies_what_waguard_does_not_need(
        vault: VaultClient, openbao: OpenBao, transit_key_name: str) -> None:
    await vault.ensure_signing_key(transit_key_name)
    async with VaultClient.from_settings(openbao.approle_settings) as app:
        with pytest.raises(VaultPermissionDenied) as err:
            await app.sign(transit_key_name, b"not with this key")
        assert transit_key_name in str(err.value) and not isinstance(err.value, Retryable)
        with pytest.raises(VaultPermissionDenied):
            await app.rotate_key(transit_key_name)


async def test_approle_logs_in_again_when_its_token_is_revoked(
        vault: VaultClient, vault_prefix: str, openbao: OpenBao) -> None:
    await vault.write_secret(f"{vault_prefix}/x", SecretStr("still-readable"))
    async with VaultClient.from_settings(openbao.approle_settings) as app:
        await app.check()
        first = app.hvac_client.token
        await asyncio.to_thread(app.hvac_client.auth.token.revoke_self)
        assert (await app.read_secret(f"{vault_prefix}/x")).value.get_secret_value() == "still-readable"
        assert app.hvac_client.token != first


async def test_approle_with_a_wrong_secret_id_is_a_config_error(openbao: OpenBao, tmp_path: Path) -> None:
    wrong = "0000-" + secrets.token_hex(8)
    (tmp_path / "secret-id").write_text(wrong)
    settings = openbao.approle_settings.model_copy(update={"secret_id_file": tmp_path / "secret-id"})
    async with VaultClient.from_settings(settings) as client:
        with pytest.raises(ConfigError) as err:
            await client.check()
    assert "WAGUARD_VAULT__SECRET_ID_FILE" in str(err.value)
    assert_no_leak(err.value, wrong)


async def test_wrong_token_is_a_config_error_naming_the_setting(openbao: OpenBao, tmp_path: Path) -> None:
    wrong = "s." + secrets.token_hex(12)
    (tmp_path / "token").write_text(wrong + "\n")
    async with VaultClient.from_settings(
            openbao.settings.model_copy(update={"token_file": tmp_path / "token"})) as client:
        with pytest.raises(ConfigError) as err:
            await client.check()
    assert "WAGUARD_VAULT__TOKEN_FILE" in str(err.value) and str(tmp_path / "token") in str(err.value)
    assert_no_leak(err.value, wrong)


def test_missing_token_file_is_a_config_error(openbao: OpenBao, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WAGUARD_VAULT__TOKEN_FILE"):
        VaultClient.from_settings(openbao.settings.model_copy(update={"token_file": tmp_path / "nope"}))


# -- failures: unavailable, and never a value in a message or a log ------------------------------


async def test_stopped_server_is_unavailable_and_retryable(
        own_openbao: tuple[ChildProcess, VaultSettings, str]) -> None:
    server, settings, root = own_openbao
    value = secret_value()
    async with VaultClient.from_settings(settings) as client:
        await client.write_secret("meta/app-secret", value)
        server.stop()

        with pytest.raises(VaultUnavailable) as err:
            await client.read_secret("meta/app-secret")
        assert isinstance(err.value, Retryable)
        assert "meta/app-secret" in str(err.value) and settings.addr in str(err.value)
        assert_no_leak(err.value, value.get_secret_value(), root)
        with pytest.raises(VaultUnavailable):
            await client.write_secret("meta/app-secret", value)
        with pytest.raises(VaultUnavailable):
            await client.check()


async def test_sealed_server_is_unavailable(own_openbao: tuple[ChildProcess, VaultSettings, str]) -> None:
    _, settings, root = own_openbao
    async with VaultClient.from_settings(settings) as client:
        await client.write_secret("meta/app-secret", SecretStr("sealed-away"))
        await asyncio.to_thread(client.hvac_client.sys.seal)

        with pytest.raises(VaultUnavailable, match="503") as err:
            await client.read_secret("meta/app-secret")
        assert_no_leak(err.value, "sealed-away", root)
        with pytest.raises(VaultUnavailable):
            await client.check()


async def test_no_secret_value_in_any_error_or_log(
        vault: VaultClient, vault_prefix: str, openbao: OpenBao, caplog: pytest.LogCaptureFixture,
        transit_key_name: str) -> None:
    caplog.set_level(logging.DEBUG)  # root: hvac, urllib3 and waguard all at DEBUG
    path = f"{vault_prefix}/meta/app-secret"
    first, second = secret_value(), secret_value()
    await vault.write_secret(path, first)
    await vault.write_secret(path, second)
    await vault.destroy_versions(path, [1])
    await vault.read_secret(path)
    await vault.read_all_secret_values([f"{vault_prefix}/"])
    data_key = await vault.generate_data_key(ENCRYPTION_KEY)
    await vault.decrypt_data_key(ENCRYPTION_KEY, data_key.ciphertext)
    values = [first.get_secret_value(), second.get_secret_value(), data_key.plaintext.get_secret_value(),
              openbao.root_token.get_secret_value()]

    errors: list[BaseException] = []
    async with VaultClient.from_settings(openbao.approle_settings) as app:
        provocations = [
            vault.write_secret(path, first, cas=1),                 # cas conflict
            vault.read_secret(path, version=1),                     # destroyed
            vault.read_secret(path, key="missing"),                 # no such key
            vault.sign(transit_key_name, b"x"),                     # no such transit key
            vault.decrypt_data_key(ENCRYPTION_KEY, "vault:v1:" + base64.b64encode(b"x" * 40).decode()),
            app.sign("some-other-key", b"x"),                       # permission denied
        ]
        for call in provocations:
            with pytest.raises(VaultError) as err:
                await call
            errors.append(err.value)

    assert [type(e) for e in errors] == [VaultCasConflict, VaultSecretNotFound, VaultSecretNotFound,
                                         VaultKeyError, VaultError, VaultPermissionDenied]
    for e in errors:
        assert e.__cause__ is None and e.__context__ is None  # no hvac exception (and its response) chained
        assert_no_leak(e, *values)
    assert any(r.name.startswith("waguard.vault") for r in caplog.records)
    for record in caplog.records:
        assert not any(v in record.getMessage() for v in values)
    assert not any(v in caplog.text for v in values)


def test_dev_server_log_and_repr_hide_the_root_token(openbao: OpenBao) -> None:
    root = openbao.root_token.get_secret_value()
    log = openbao.log_path.read_text()
    assert "Root Token: [redacted]" in log and root not in log
    assert root not in repr(openbao.server) and root not in " ".join(openbao.server.argv)
    assert root not in repr(openbao)
