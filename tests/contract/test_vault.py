"""VaultClient against a real OpenBao dev server (see tests/fixtures/vault.py).

Every test works under its own `vault_prefix`, or on its own transit key when it rotates one, so the
tests share the session's server without seeing each other.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import threading
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import hvac
import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from tests.fixtures.vault import OpenBao
from waguard.errors import ConfigError, Retryable
from waguard.servers import ChildProcess, free_port
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

EVIDENCE_KEY = "waguard-evidence"


def secret_value() -> SecretStr:
    return SecretStr("s3cr3t-" + secrets.token_hex(16))


def assert_no_leak(exc: BaseException, *values: str) -> None:
    """None of `values` in the error's str, repr or full formatted traceback (chained errors included)."""
    text = "".join(traceback.format_exception(exc)) + str(exc) + repr(exc)
    for value in values:
        assert value not in text


@pytest.fixture
def transit_key_name() -> str:
    """A transit key of this test's own, for tests that rotate keys."""
    return f"test-{uuid.uuid4().hex[:12]}"


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


# -- KV version 2 -------------------------------------------------------------------------------


async def test_write_returns_the_new_version(vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/app-secret"
    assert await vault.write_secret(path, secret_value()) == 1
    assert await vault.write_secret(path, secret_value()) == 2


async def test_read_current_and_a_given_version(vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/token"
    first, second = secret_value(), secret_value()
    await vault.write_secret(path, first)
    await vault.write_secret(path, second)

    current = await vault.read_secret(path)
    assert (current.path, current.version) == (path, 2)
    assert current.value.get_secret_value() == second.get_secret_value()
    assert current.created_time.tzinfo is not None and current.created_time.utcoffset().total_seconds() == 0

    old = await vault.read_secret(path, version=1)
    assert old.version == 1 and old.value.get_secret_value() == first.get_secret_value()
    assert second.get_secret_value() not in repr(current)


async def test_read_another_key(vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/pin"
    await vault.write_secret(path, SecretStr("123456"), key="pin")
    assert (await vault.read_secret(path, key="pin")).value.get_secret_value() == "123456"
    with pytest.raises(VaultSecretNotFound) as err:
        await vault.read_secret(path)  # key "value" is not there
    assert err.value.reason == "no such key" and err.value.key == "value"


async def test_metadata_lists_versions_with_times(vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/rotated"
    before = datetime.now(UTC).replace(microsecond=0)
    for _ in range(3):
        await vault.write_secret(path, secret_value())

    meta = await vault.read_metadata(path)
    assert meta.path == path and meta.current_version == 3
    assert sorted(meta.versions) == [1, 2, 3]
    assert meta.created_time >= before and meta.updated_time >= meta.created_time
    assert meta.versions[1].created_time <= meta.versions[2].created_time <= meta.versions[3].created_time
    assert all(v.readable and v.deletion_time is None and not v.destroyed for v in meta.versions.values())
    assert meta.created_time == meta.versions[1].created_time


async def test_destroyed_version_is_gone_and_the_current_one_stays(
        vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/leaked"
    leaked, fresh = secret_value(), secret_value()
    await vault.write_secret(path, leaked)
    await vault.write_secret(path, fresh)

    await vault.destroy_versions(path, [1])

    with pytest.raises(VaultSecretNotFound) as err:
        await vault.read_secret(path, version=1)
    assert (err.value.path, err.value.version, err.value.reason) == (path, 1, "destroyed")
    assert path in str(err.value) and "destroyed" in str(err.value)
    assert_no_leak(err.value, leaked.get_secret_value(), fresh.get_secret_value())
    assert (await vault.read_secret(path)).value.get_secret_value() == fresh.get_secret_value()
    meta = await vault.read_metadata(path)
    assert meta.versions[1].destroyed and not meta.versions[1].readable and meta.versions[2].readable
    assert await vault.secret_exists(path)

    await vault.destroy_versions(path, [2])
    assert not await vault.secret_exists(path)


async def test_missing_secret_and_version(vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/never-written"
    assert not await vault.secret_exists(path)
    with pytest.raises(VaultSecretNotFound) as err:
        await vault.read_secret(path)
    assert err.value.reason == "absent" and path in str(err.value)
    with pytest.raises(VaultSecretNotFound):
        await vault.read_metadata(path)

    await vault.write_secret(path, secret_value())
    assert await vault.secret_exists(path)
    with pytest.raises(VaultSecretNotFound) as err:
        await vault.read_secret(path, version=7)
    assert (err.value.version, err.value.reason) == (7, "absent")


async def test_check_and_set(vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/cas"
    first, late = secret_value(), secret_value()
    assert await vault.write_secret(path, first, cas=0) == 1  # cas=0: create only
    with pytest.raises(VaultCasConflict) as err:
        await vault.write_secret(path, late, cas=0)
    assert (err.value.path, err.value.cas) == (path, 0)
    assert_no_leak(err.value, first.get_secret_value(), late.get_secret_value())

    assert await vault.write_secret(path, secret_value(), cas=1) == 2
    with pytest.raises(VaultCasConflict):
        await vault.write_secret(path, late, cas=1)  # someone else wrote version 2 meanwhile
    assert (await vault.read_metadata(path)).current_version == 2


async def test_list_paths_is_recursive(vault: VaultClient, vault_prefix: str) -> None:
    names = ("meta/app-secret", "meta/tokens/system-user", "slack/bot-token", "top")
    for name in names:
        await vault.write_secret(f"{vault_prefix}/{name}", secret_value())

    assert await vault.list_paths(vault_prefix) == sorted(f"{vault_prefix}/{n}" for n in names)
    assert await vault.list_paths(f"{vault_prefix}/meta/") == [
        f"{vault_prefix}/meta/app-secret", f"{vault_prefix}/meta/tokens/system-user"]
    assert await vault.list_paths(f"{vault_prefix}/nothing-here") == []


async def test_read_all_secret_values_covers_old_versions_and_all_keys(
        vault: VaultClient, vault_prefix: str, openbao: OpenBao) -> None:
    old, new, other, destroyed = (secret_value() for _ in range(4))
    await vault.write_secret(f"{vault_prefix}/meta/app-secret", old)
    await vault.write_secret(f"{vault_prefix}/meta/app-secret", new)
    await vault.write_secret(f"{vault_prefix}/slack/gone", destroyed)
    await vault.destroy_versions(f"{vault_prefix}/slack/gone", [1])
    # A secret with several keys, written the way an operator might with the CLI.
    await asyncio.to_thread(vault.hvac_client.secrets.kv.v2.create_or_update_secret,
                            f"{vault_prefix}/slack/app",
                            secret={"signing_secret": other.get_secret_value(), "team": "T0TEAM"})

    values = await vault.read_all_secret_values([f"{vault_prefix}/", f"{vault_prefix}/absent"])
    got = {v.get_secret_value() for v in values}
    assert got == {old.get_secret_value(), new.get_secret_value(), other.get_secret_value(), "T0TEAM"}
    assert len(values) == len(got)

    only = await vault.read_all_secret_values([f"{vault_prefix}/meta/app-secret"])
    assert {v.get_secret_value() for v in only} == {old.get_secret_value(), new.get_secret_value()}


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


# -- transit ------------------------------------------------------------------------------------


async def test_sign_and_verify_round_trip(vault: VaultClient) -> None:
    data = b'{"incident": "INC-1", "sha256": "ab12"}'
    signature = await vault.sign(EVIDENCE_KEY, data)
    assert signature.signature.startswith(f"vault:v{signature.key_version}:")
    assert len(signature.raw) == 64  # ed25519
    assert await vault.verify(EVIDENCE_KEY, data, signature.signature)

    changed = bytearray(data)
    changed[5] ^= 0x01
    assert not await vault.verify(EVIDENCE_KEY, bytes(changed), signature.signature)
    assert not await vault.verify(EVIDENCE_KEY, data, "not-a-signature")
    assert not await vault.verify(EVIDENCE_KEY, data, "vault:v99:" + signature.signature.split(":")[2])


async def test_rotated_key_still_verifies_old_signatures(vault: VaultClient, transit_key_name: str) -> None:
    assert await vault.ensure_signing_key(transit_key_name) == 1
    old = await vault.sign(transit_key_name, b"before rotation")
    assert old.key_version == 1

    assert await vault.rotate_key(transit_key_name) == 2
    new = await vault.sign(transit_key_name, b"after rotation")
    assert new.key_version == 2 and new.signature.startswith("vault:v2:")
    assert await vault.verify(transit_key_name, b"before rotation", old.signature)
    assert await vault.verify(transit_key_name, b"after rotation", new.signature)
    pinned = await vault.sign(transit_key_name, b"pinned", key_version=1)
    assert pinned.key_version == 1

    keys = await vault.public_keys(transit_key_name)
    assert sorted(keys) == [1, 2] and keys[1] != keys[2]
    assert await vault.ensure_signing_key(transit_key_name) == 2  # idempotent: no new version


async def test_public_key_verifies_a_signature_offline(vault: VaultClient) -> None:
    data = b"evidence bundle manifest"
    signature = await vault.sign(EVIDENCE_KEY, data)
    public = Ed25519PublicKey.from_public_bytes(
        base64.b64decode((await vault.public_keys(EVIDENCE_KEY))[signature.key_version]))

    public.verify(signature.raw, data)  # raises InvalidSignature when wrong
    with pytest.raises(InvalidSignature):
        public.verify(signature.raw, data + b"!")


@settings(max_examples=25, deadline=None)
@given(data=st.binary(min_size=1, max_size=512), where=st.integers(min_value=0), flip=st.integers(1, 255))
def test_any_changed_byte_fails_verification(openbao: OpenBao, data: bytes, where: int, flip: int) -> None:
    tampered = bytearray(data)
    tampered[where % len(data)] ^= flip

    async def scenario() -> tuple[bool, bool, bool]:
        async with VaultClient.from_settings(openbao.settings) as vault:
            signature = await vault.sign(EVIDENCE_KEY, data)
            public = Ed25519PublicKey.from_public_bytes(
                base64.b64decode((await vault.public_keys(EVIDENCE_KEY))[signature.key_version]))
            try:
                public.verify(signature.raw, bytes(tampered))
                offline = True
            except InvalidSignature:
                offline = False
            return (await vault.verify(EVIDENCE_KEY, data, signature.signature),
                    await vault.verify(EVIDENCE_KEY, bytes(tampered), signature.signature), offline)

    assert asyncio.run(scenario()) == (True, False, False)


async def test_data_key_round_trip(vault: VaultClient) -> None:
    data_key = await vault.generate_data_key(ENCRYPTION_KEY)
    plaintext = data_key.plaintext.get_secret_value()
    assert len(base64.b64decode(plaintext)) == 32
    assert data_key.ciphertext.startswith(f"vault:v{data_key.key_version}:")
    assert plaintext not in repr(data_key) and plaintext not in str(data_key)

    opened = await vault.decrypt_data_key(ENCRYPTION_KEY, data_key.ciphertext)
    assert opened.get_secret_value() == plaintext
    assert (await vault.generate_data_key(ENCRYPTION_KEY)).plaintext != data_key.plaintext

    with pytest.raises(VaultError) as err:
        await vault.decrypt_data_key(ENCRYPTION_KEY, "vault:v1:AAAA")
    assert ENCRYPTION_KEY in str(err.value)


async def test_key_errors(vault: VaultClient, transit_key_name: str) -> None:
    with pytest.raises(VaultKeyError, match=transit_key_name):
        await vault.sign(transit_key_name, b"x")
    with pytest.raises(VaultKeyError, match=transit_key_name):
        await vault.public_keys(transit_key_name)
    with pytest.raises(VaultKeyError, match="aes256-gcm96"):
        await vault.ensure_signing_key(ENCRYPTION_KEY)  # exists, but it is not a signing key
    with pytest.raises(VaultKeyError, match="no public key"):
        await vault.public_keys(ENCRYPTION_KEY)


# -- the event loop -----------------------------------------------------------------------------


async def test_calls_run_off_the_event_loop(openbao: OpenBao, vault: VaultClient, vault_prefix: str) -> None:
    """Two reads are in flight at once, in worker threads, while another coroutine keeps running.

    Each read's HTTP response is held in a hook until both requests have reached Vault: if the
    client ran hvac on the loop thread, or one call at a time, the barrier would break instead.
    """
    await vault.write_secret(f"{vault_prefix}/a", SecretStr("A"))
    await vault.write_secret(f"{vault_prefix}/b", SecretStr("B"))
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    both_in_flight = threading.Barrier(2, timeout=30)

    def hold(response: requests.Response, *args: object, **kwargs: object) -> requests.Response:
        threads.add(threading.get_ident())
        both_in_flight.wait()
        return response

    session = requests.Session()
    session.hooks["response"].append(hold)
    client = VaultClient(hvac.Client(url=openbao.addr, token=openbao.root_token.get_secret_value(),
                                     session=session))
    events: list[str] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            events.append("tick")
            await asyncio.sleep(0)

    async def read(name: str) -> str:
        value = (await client.read_secret(f"{vault_prefix}/{name}")).value.get_secret_value()
        events.append(f"read {name}")
        return value

    ticking = asyncio.create_task(ticker())
    try:
        assert await asyncio.gather(read("a"), read("b")) == ["A", "B"]
    finally:
        stop.set()
        await ticking
        client.close()

    assert len(threads) == 2 and loop_thread not in threads
    first_read = min(events.index("read a"), events.index("read b"))
    assert "tick" in events[:first_read]


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
