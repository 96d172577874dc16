"""Game-day "Vault is down" against a real OpenBao dev server (waguard.vault.outage).

These tests seal their own dev server, started once for the module, so the session's shared server
(tests/fixtures/vault.py) stays up for everything else. Every test leaves the server unsealed.
The `_logscrub` capture of the unseal key is tested here too, as a pure function and as a script.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from waguard.errors import ConfigError, Retryable
from waguard.local.processes import ChildProcess, free_port
from waguard.settings import VaultSettings
from waguard.vault import _logscrub, devserver
from waguard.vault.client import ENCRYPTION_KEY, VaultClient
from waguard.vault.errors import VaultError, VaultUnavailable
from waguard.vault.outage import seal, sealed, unseal, unseal_after, vault_outage

SIGNING_KEY = "waguard-evidence"


@dataclass(frozen=True)
class SealableBao:
    addr: str
    root_token: str
    token_file: Path
    unseal_key_file: Path
    log_path: Path
    settings: VaultSettings
    approle_settings: VaultSettings
    server: ChildProcess

    @property
    def unseal_key(self) -> str:
        return self.unseal_key_file.read_text().strip()


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealableBao]:
    """A bootstrapped dev server of this module's own, whose unseal key is kept in a (new) subfolder."""
    home = tmp_path_factory.mktemp("sealable-openbao")
    root = secrets.token_urlsafe(24)
    port = free_port()
    key_file = home / "keys" / "vault-unseal-key"
    server = devserver.dev_server(port=port, root_token=root, log_path=home / "openbao.log",
                                  unseal_key_file=key_file)
    server.start()
    try:
        addr = f"http://127.0.0.1:{port}"
        token_file = home / "vault-token"
        token_file.write_text(root)
        token_file.chmod(0o600)
        settings = VaultSettings(addr=addr, auth_method="token", token_file=token_file)
        admin = VaultClient.from_settings(settings)
        try:
            boot = devserver.bootstrap(admin, transit_key=SIGNING_KEY, secret_id_file=home / "secret-id")
        finally:
            admin.close()
        approle = VaultSettings(addr=addr, auth_method="approle", role_id=boot.role_id,
                                secret_id_file=home / "secret-id", token_file=None)
        yield SealableBao(addr=addr, root_token=root, token_file=token_file, unseal_key_file=key_file,
                          log_path=server.log_path, settings=settings, approle_settings=approle,
                          server=server)
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def left_unsealed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a test did, the module's server is unsealed for the next one."""
    yield
    if "bao" in request.fixturenames:
        b: SealableBao = request.getfixturevalue("bao")
        if sealed(b.addr):
            unseal(b.addr, b.unseal_key)


def no_leak(text: str, *values: str) -> None:
    for value in values:
        assert value not in text


def error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + str(exc) + repr(exc)


# -- the scrubber keeps the unseal key ----------------------------------------------------------


def test_unseal_key_capture_is_the_banner_value_only() -> None:
    assert _logscrub.unseal_key(b"Unseal Key: jww6vI7L/tjx+U0k=\n") == b"jww6vI7L/tjx+U0k="
    assert _logscrub.unseal_key(b"  Unseal Key: abc  \n") == b"abc"
    assert _logscrub.unseal_key(b"Root Token: abc\n") is None
    assert _logscrub.unseal_key(b"The unseal key and root token are displayed below in case\n") is None
    assert _logscrub.unseal_key(b"[INFO] core: Unseal Key: x is not a banner\n") is None
    assert _logscrub.unseal_key(b"Unseal Key:\n") is None


def test_keep_unseal_key_makes_the_folder_and_a_0600_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "vault-unseal-key"
    _logscrub.keep_unseal_key(str(target), b"k1")
    assert target.read_bytes() == b"k1" and target.stat().st_mode & 0o777 == 0o600
    target.chmod(0o644)  # a leftover, too widely readable: replaced by a private file
    _logscrub.keep_unseal_key(str(target), b"k2")
    assert target.read_bytes() == b"k2" and target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["vault-unseal-key"]  # no partial file left


def test_scrubber_script_keeps_the_key_and_blanks_it_in_the_output(tmp_path: Path) -> None:
    target = tmp_path / "keys" / "unseal"
    child = "import os; print('Unseal Key: KEY-123='); print('Root Token: TOK'); " \
            "print('child sees', os.environ.get('BAO_UNSEAL_KEY_FILE'))"
    argv = [sys.executable, "-I", _logscrub.__file__, "NONE", "--", sys.executable, "-c", child]
    out = subprocess.run(argv, env={**os.environ, "BAO_UNSEAL_KEY_FILE": str(target)}, capture_output=True,
                         check=True, timeout=30).stdout
    assert out == b"Unseal Key: [redacted]\nRoot Token: [redacted]\nchild sees None\n"
    assert target.read_bytes() == b"KEY-123=" and target.stat().st_mode & 0o777 == 0o600


def test_dev_server_keeps_its_unseal_key_0600_and_out_of_the_log(bao: SealableBao) -> None:
    key = bao.unseal_key
    assert len(key) >= 20
    assert bao.unseal_key_file.stat().st_mode & 0o777 == 0o600
    log = bao.log_path.read_text()
    assert "Unseal Key: [redacted]" in log
    no_leak(log, key, bao.root_token)
    no_leak(repr(bao.server) + " ".join(bao.server.argv), key, bao.root_token)


# -- a sealed server is unavailable, and everything is back after unsealing ----------------------


async def test_sealed_server_is_unavailable_and_keeps_its_data(bao: SealableBao) -> None:
    value = SecretStr("outage-" + secrets.token_hex(8))
    async with VaultClient.from_settings(bao.settings) as vault, \
            VaultClient.from_settings(bao.approle_settings) as app:
        await app.check()
        version = await vault.write_secret("drill/kept", value)
        signature = await vault.sign(SIGNING_KEY, b"evidence")
        data_key = await vault.generate_data_key(ENCRYPTION_KEY)
        public = await vault.public_keys(SIGNING_KEY)

        seal(bao.addr, bao.root_token)
        assert sealed(bao.addr)
        seal(bao.addr, bao.root_token)  # sealing a sealed server changes nothing
        for client in (vault, app):
            attempts = [lambda c=client: c.read_secret("drill/kept"),
                        lambda c=client: c.write_secret("drill/new", value),
                        lambda c=client: c.sign(SIGNING_KEY, b"x"),
                        lambda c=client: c.decrypt_data_key(ENCRYPTION_KEY, data_key.ciphertext)]
            for attempt in attempts:
                with pytest.raises(VaultUnavailable, match="503") as err:
                    await attempt()
                assert isinstance(err.value, Retryable)
                no_leak(error_text(err.value), value.get_secret_value(), bao.root_token, bao.unseal_key)

        unseal(bao.addr, bao.unseal_key)
        assert not sealed(bao.addr)
        kept = await vault.read_secret("drill/kept")
        assert kept.value.get_secret_value() == value.get_secret_value() and kept.version == version
        assert (await app.read_secret("drill/kept")).version == version  # AppRole token survived too
        assert await vault.verify(SIGNING_KEY, b"evidence", signature.signature)
        assert await vault.public_keys(SIGNING_KEY) == public
        opened = await vault.decrypt_data_key(ENCRYPTION_KEY, data_key.ciphertext)
        assert opened.get_secret_value() == data_key.plaintext.get_secret_value()
        assert await vault.write_secret("drill/kept", value) == version + 1


async def test_vault_outage_keeps_vault_sealed_until_the_unsealer_is_done(
        bao: SealableBao, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with VaultClient.from_settings(bao.settings) as vault:
        await vault.write_secret("drill/outage", SecretStr("during"))
        # An hour: while the block runs, the unsealer is still waiting out its time and Vault is down.
        with vault_outage(bao.addr, bao.token_file, bao.unseal_key_file, seconds=3600) as unsealer:
            assert sealed(bao.addr)
            with pytest.raises(VaultUnavailable):
                await vault.read_secret("drill/outage")
            assert unsealer.is_alive() and sealed(bao.addr)
            unsealer.finish(now=True)  # end the hour now (the timer firing alone: the test below)
        assert not unsealer.is_alive() and not sealed(bao.addr)
        assert (await vault.read_secret("drill/outage")).value.get_secret_value() == "during"
    no_leak(caplog.text, bao.root_token, bao.unseal_key)
    assert "sealed for a drill" in caplog.text


def test_vault_outage_ends_at_once_when_the_block_raises(bao: SealableBao) -> None:
    raised: list[BaseException] = []

    def drill() -> None:  # an hour-long outage whose block fails: Vault must come back without the hour
        try:
            with vault_outage(bao.addr, bao.token_file, bao.unseal_key_file, seconds=3600):
                assert sealed(bao.addr)
                raise RuntimeError("drill aborted")
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=drill)
    worker.start()
    worker.join(timeout=60)  # a bound on a hang, not a measurement: unsealing takes milliseconds
    assert not worker.is_alive(), "leaving the block waited for the outage's time"
    assert [str(e) for e in raised] == ["drill aborted"] and not sealed(bao.addr)


def test_vault_outage_block_outlasting_the_outage_finds_vault_back(bao: SealableBao) -> None:
    with vault_outage(bao.addr, bao.token_file, bao.unseal_key_file, seconds=0.2) as unsealer:
        unsealer.join(timeout=15)
        assert not sealed(bao.addr)


def test_unseal_after_lets_the_caller_carry_on(bao: SealableBao) -> None:
    seal(bao.addr, bao.root_token)
    unsealer = unseal_after(bao.addr, bao.unseal_key, 0.3)
    assert sealed(bao.addr)
    unsealer.finish()
    assert not sealed(bao.addr)


def test_missing_files_seal_nothing_and_say_why(bao: SealableBao, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="started before unseal keys were kept") as err, \
            vault_outage(bao.addr, bao.token_file, tmp_path / "vault-unseal-key", seconds=1):
        pass
    assert str(tmp_path / "vault-unseal-key") in str(err.value)
    with pytest.raises(ConfigError, match="root token file"), \
            vault_outage(bao.addr, tmp_path / "no-token", bao.unseal_key_file, seconds=1):
        pass
    assert not sealed(bao.addr)


def test_refusals_name_the_step_never_the_values(bao: SealableBao) -> None:
    wrong_token, wrong_key = "not-the-root-" + secrets.token_hex(8), secrets.token_hex(32)
    with pytest.raises(VaultError, match="refused to seal") as err:
        seal(bao.addr, wrong_token)
    no_leak(error_text(err.value), wrong_token)
    assert not sealed(bao.addr)

    seal(bao.addr, bao.root_token)
    with pytest.raises(VaultError, match="refused to unseal") as err:
        unseal(bao.addr, wrong_key)
    no_leak(error_text(err.value), wrong_key, bao.unseal_key, bao.root_token)
    assert sealed(bao.addr)
    unseal(bao.addr, bao.unseal_key)
    assert not sealed(bao.addr)


def test_an_unreachable_vault_is_unavailable(bao: SealableBao) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(VaultUnavailable, match="unreachable during seal") as err:
        seal(gone, bao.root_token)
    no_leak(error_text(err.value), bao.root_token)
    assert err.value.__context__ is None
