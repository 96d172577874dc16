"""VaultClient's transit engine against a real OpenBao dev server (see tests/fixtures/vault.py):
signing and verifying (online and offline), key rotation, data keys, and key errors.

A test that rotates a key works on its own transit key (`transit_key_name`), so the tests share the
session's server without seeing each other.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures.vault import EVIDENCE_KEY, OpenBao
from waguard.vault.client import ENCRYPTION_KEY, VaultClient
from waguard.vault.errors import VaultError, VaultKeyError

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
