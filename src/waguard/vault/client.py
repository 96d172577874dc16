"""`VaultClient`: waguard's async API over hvac for KV v2 secrets and transit keys.

Every method runs its hvac calls in a worker thread through `VaultConnection._call`, so the event loop
is never blocked, and secret values cross that boundary only as `SecretStr`: they are unwrapped inside
the worker just before hvac sends them and wrapped there as soon as hvac returns them.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import hvac
import hvac.exceptions
from pydantic import SecretStr

from waguard.vault import models
from waguard.vault.connection import AppRoleLogin, VaultConnection, read_credential_file
from waguard.vault.errors import VaultKeyError, VaultSecretNotFound, is_bad_signature
from waguard.vault.models import DataKey, SecretMetadata, TransitSignature, VersionedSecret

log = logging.getLogger(__name__)

ENCRYPTION_KEY = "waguard-evidence-enc"
READ_CONCURRENCY = 8  # concurrent reads of many secrets (redaction); below requests' pool of 10


def ensure_key_blocking(client: hvac.Client, *, mount: str, name: str, key_type: str) -> dict[str, Any]:
    """Create transit key `name` of `key_type` unless it exists; return its description. Blocking.

    Raises:
        VaultKeyError: the key exists with another type (it is left as it is).
    """
    transit = client.secrets.transit
    try:
        data: dict[str, Any] = transit.read_key(name, mount_point=mount)["data"]
    except hvac.exceptions.InvalidPath:
        # POST keys/<name> on an existing key is a silent no-op that ignores the type, hence the read.
        transit.create_key(name, key_type=key_type, mount_point=mount)
        data = transit.read_key(name, mount_point=mount)["data"]
    if data["type"] != key_type:
        raise VaultKeyError(f"vault transit key {name!r} exists with type {data['type']!r}, not {key_type!r}")
    return data


class VaultClient(VaultConnection):
    """Async access to waguard's secrets (KV v2) and keys (transit) in Vault or OpenBao.

    Example:
        vault = VaultClient.from_settings(settings.vault)
        await vault.check()
        token = (await vault.read_secret(settings.meta.token_path)).value
    """

    # -- KV version 2 ---------------------------------------------------------------------------

    async def write_secret(self, path: str, value: SecretStr, *, key: str = "value",
                           cas: int | None = None) -> int:
        """Write a new version of the secret at `path` holding `{key: value}`; return its version number.

        The new version replaces all keys of the previous one. `cas=N` writes only if the current
        version is N (`cas=0`: only if the secret does not exist yet).

        Raises:
            VaultCasConflict: `cas` did not match the current version.
            VaultPermissionDenied, VaultUnavailable, VaultError.
        """
        kv = self._client.secrets.kv.v2

        def write() -> int:
            body = kv.create_or_update_secret(path, secret={key: value.get_secret_value()}, cas=cas,
                                              mount_point=self.kv_mount)
            return int(body["data"]["version"])

        version = await self._call("write secret", write, path=path, version=cas)
        log.info("vault wrote secret %s version %d", path, version)
        return version

    async def read_secret(self, path: str, *, key: str = "value",
                          version: int | None = None) -> VersionedSecret:
        """Read one key of the current (or a given) version of a secret.

        Raises:
            VaultSecretNotFound: no such path or version, the version was deleted or destroyed, or it
                has no `key`; `reason` says which.
        """
        kv = self._client.secrets.kv.v2

        def read() -> VersionedSecret | None:
            body = kv.read_secret_version(path, version=version, mount_point=self.kv_mount,
                                          raise_on_deleted_version=True)
            return models.versioned_secret_from(path, key, body["data"])

        secret = await self._call("read secret", read, path=path, version=version)
        if secret is None:
            raise VaultSecretNotFound(path, version, "no such key", key)
        return secret

    async def read_metadata(self, path: str) -> SecretMetadata:
        """Read a secret's versions and their times (no values).

        Raises:
            VaultSecretNotFound: nothing was ever written at `path`.
        """
        kv = self._client.secrets.kv.v2
        body = await self._call(
            "read metadata", lambda: kv.read_secret_metadata(path, mount_point=self.kv_mount), path=path)
        return models.metadata_from(path, body["data"])

    async def destroy_versions(self, path: str, versions: list[int]) -> None:
        """Destroy versions of a secret for good (their values are erased; metadata remains)."""
        if not versions:
            return
        kv = self._client.secrets.kv.v2
        await self._call("destroy versions", lambda: kv.destroy_secret_versions(
            path, versions, mount_point=self.kv_mount), path=path)
        log.info("vault destroyed secret %s versions %s", path, sorted(versions))

    async def secret_exists(self, path: str) -> bool:
        """True when the current version of the secret at `path` can be read (not deleted or destroyed)."""
        try:
            meta = await self.read_metadata(path)
        except VaultSecretNotFound:
            return False
        current = meta.versions.get(meta.current_version)
        return current is not None and current.readable

    def _walk(self, prefix: str) -> list[str]:
        # Blocking: runs inside a worker thread. Vault lists one folder at a time; folders end in "/".
        kv = self._client.secrets.kv.v2
        found: list[str] = []
        folders = [prefix.strip("/") + "/" if prefix.strip("/") else ""]
        while folders:
            folder = folders.pop()
            try:
                keys = kv.list_secrets(folder, mount_point=self.kv_mount)["data"]["keys"]
            except hvac.exceptions.InvalidPath:
                continue  # an empty or absent folder lists as 404
            for name in keys:
                (folders if name.endswith("/") else found).append(folder + name)
        return sorted(found)

    async def list_paths(self, prefix: str = "") -> list[str]:
        """Every secret path under `prefix` (recursively), sorted; [] when there is none."""
        return await self._call("list secrets", lambda: self._walk(prefix), path=prefix)

    async def read_all_secret_values(self, paths: Iterable[str]) -> list[SecretStr]:
        """Every distinct value Vault holds at `paths`, for redaction.

        An entry ending in "/" (or "") is a prefix and covers every secret under it. For each secret,
        every key of every readable version counts: an old, rotated-out value is exactly what a leak
        report may still contain. Missing paths contribute nothing; deleted and destroyed versions
        cannot be read and are skipped.
        """
        kv = self._client.secrets.kv.v2
        wanted = list(paths)

        def values_of(path: str) -> list[str]:
            try:
                data = kv.read_secret_metadata(path, mount_point=self.kv_mount)["data"]
                meta = models.metadata_from(path, data)
            except hvac.exceptions.InvalidPath:
                return []
            found: list[str] = []
            for number, info in sorted(meta.versions.items()):
                if info.readable:
                    body = kv.read_secret_version(path, version=number, mount_point=self.kv_mount,
                                                  raise_on_deleted_version=True)
                    found += models.string_values(body["data"])
            return found

        def collect() -> list[SecretStr]:
            paths = [p for entry in wanted
                     for p in (self._walk(entry) if entry.endswith("/") or not entry else [entry])]
            # One round trip per secret and version, dozens in all: several at once (requests' pool is
            # thread-safe), as this sits on a run's path before its approval request.
            with ThreadPoolExecutor(max_workers=READ_CONCURRENCY) as pool:
                per_path = list(pool.map(values_of, paths))
            seen = dict.fromkeys(v for values in per_path for v in values)  # ordered and de-duplicated
            return [SecretStr(v) for v in seen]

        return await self._call("read all secret values", collect)

    # -- transit --------------------------------------------------------------------------------

    async def _ensure_key(self, name: str, key_type: str) -> int:
        ensure = partial(ensure_key_blocking, self._client, mount=self.transit_mount, name=name,
                         key_type=key_type)
        data = await self._call("ensure key", ensure, key=name)
        return int(data["latest_version"])

    async def ensure_signing_key(self, name: str, key_type: str = "ed25519") -> int:
        """Create the transit signing key if it is missing; return its latest version.

        The private key is not exportable; the public keys are readable (`public_keys`).

        Raises:
            VaultKeyError: the key exists with another type.
        """
        return await self._ensure_key(name, key_type)

    async def ensure_encryption_key(self, name: str = ENCRYPTION_KEY, key_type: str = "aes256-gcm96") -> int:
        """Create the transit encryption key (for data keys) if it is missing; return its latest version."""
        return await self._ensure_key(name, key_type)

    async def sign(self, name: str, data: bytes, *, key_version: int | None = None) -> TransitSignature:
        """Sign `data` with transit key `name` (its latest version unless `key_version` is given).

        Raises:
            VaultKeyError: no such key.
        """
        transit = self._client.secrets.transit
        body = await self._call("sign", lambda: transit.sign_data(
            name, hash_input=base64.b64encode(data).decode(), key_version=key_version,
            mount_point=self.transit_mount), key=name)
        signature = str(body["data"]["signature"])
        version = body["data"].get("key_version") or models.signature_key_version(signature)
        return TransitSignature(signature=signature, key_version=int(version))

    async def verify(self, name: str, data: bytes, signature: str) -> bool:
        """True when `signature` is a valid signature of `data` by any live version of key `name`.

        A malformed signature (wrong prefix, unknown version, bad length) is simply not valid.

        Raises:
            VaultKeyError: no such key.
        """
        transit = self._client.secrets.transit

        def verify() -> bool:
            try:
                body = transit.verify_signed_data(name, hash_input=base64.b64encode(data).decode(),
                                                  signature=signature, mount_point=self.transit_mount)
            except hvac.exceptions.InvalidRequest as exc:
                if is_bad_signature(exc):
                    return False
                raise
            return bool(body["data"]["valid"])

        return await self._call("verify", verify, key=name)

    async def rotate_key(self, name: str) -> int:
        """Add a new version to transit key `name`; new signatures use it, old ones still verify.

        Returns:
            The new latest version.
        """
        transit = self._client.secrets.transit

        def rotate() -> int:
            body = transit.rotate_key(name, mount_point=self.transit_mount)
            # Vault answers 204 before 1.12 and the key's description after; ask when it does not say.
            if not isinstance(body, dict):
                body = transit.read_key(name, mount_point=self.transit_mount)
            return int(body["data"]["latest_version"])

        version = await self._call("rotate key", rotate, key=name)
        log.info("vault rotated transit key %s to version %d", name, version)
        return version

    async def public_keys(self, name: str) -> dict[int, str]:
        """The base64 ed25519 public keys of transit key `name`, by version, for offline verification."""
        transit = self._client.secrets.transit
        body = await self._call("read key", lambda: transit.read_key(name, mount_point=self.transit_mount),
                                key=name)
        keys = models.public_keys_from(body["data"])
        if not keys:
            raise VaultKeyError(f"vault transit key {name!r} is not an asymmetric key; it has no public key")
        return keys

    async def generate_data_key(self, name: str = ENCRYPTION_KEY) -> DataKey:
        """A fresh 256-bit data key: plaintext (base64) to encrypt with now, ciphertext to store.

        Never persist or return the plaintext from a Prefect task; store only the ciphertext.
        """
        transit = self._client.secrets.transit

        def generate() -> DataKey:
            d = transit.generate_data_key(name, key_type="plaintext", mount_point=self.transit_mount)["data"]
            version = d.get("key_version") or models.signature_key_version(d["ciphertext"])
            return DataKey(plaintext=SecretStr(d["plaintext"]), ciphertext=d["ciphertext"],
                           key_version=int(version))

        return await self._call("generate data key", generate, key=name)

    async def decrypt_data_key(self, name: str, ciphertext: str) -> SecretStr:
        """Open a data key's ciphertext with transit key `name`; return the plaintext key (base64).

        Raises:
            VaultError: the ciphertext is malformed or was not made by this key.
        """
        transit = self._client.secrets.transit

        def decrypt() -> SecretStr:
            d = transit.decrypt_data(name, ciphertext=ciphertext, mount_point=self.transit_mount)["data"]
            return SecretStr(d["plaintext"])

        return await self._call("decrypt data key", decrypt, key=name)


__all__ = ["AppRoleLogin", "ENCRYPTION_KEY", "VaultClient", "ensure_key_blocking", "read_credential_file"]
