"""The Vault room: KV v2 secrets, transit sign/verify and data keys, token and AppRole login, over hvac.

    client.py      VaultClient: the async API the rest of waguard uses
    connection.py  construction, login, the worker-thread boundary
    errors.py      VaultError tree and the translation of hvac's exceptions
    models.py      returned values (secrets only as SecretStr) and pure parsing of Vault's JSON
    devserver.py   the OpenBao dev server of the local stack, and `bootstrap`
"""

from waguard.vault.client import ENCRYPTION_KEY, VaultClient
from waguard.vault.errors import (
    VaultCasConflict,
    VaultError,
    VaultKeyError,
    VaultPermissionDenied,
    VaultSecretNotFound,
    VaultUnavailable,
)
from waguard.vault.models import DataKey, SecretMetadata, TransitSignature, VersionedSecret, VersionInfo

__all__ = [
    "ENCRYPTION_KEY",
    "DataKey",
    "SecretMetadata",
    "TransitSignature",
    "VaultCasConflict",
    "VaultClient",
    "VaultError",
    "VaultKeyError",
    "VaultPermissionDenied",
    "VaultSecretNotFound",
    "VaultUnavailable",
    "VersionInfo",
    "VersionedSecret",
]
