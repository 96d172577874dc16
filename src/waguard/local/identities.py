"""Which Vault identity each process of the local stack logs in as: the AppRole role id and secret-id
files `waguard up` writes under the stack's home (deploy/vault/*.hcl are the policies)."""

from __future__ import annotations

from pathlib import Path

from waguard.local.processes import StackError
from waguard.settings import Settings, VaultSettings
from waguard.vault.identities import Identity, login_env, login_settings, read_login


def identity_dir(settings: Settings) -> Path:
    """Where the local stack keeps each identity's role id and secret-id file (mode 0600)."""
    return settings.stack.home.resolve() / "vault"


def identity_env(settings: Settings, identity: Identity) -> dict[str, str]:
    """Environment that logs a waguard process in as `identity` of this stack (playbook runs also get
    the evidence identity for signing)."""
    directory = identity_dir(settings)
    login = read_login(directory, identity)
    if login is None:
        raise StackError(f"no {identity} login in {directory}: the stack's Vault was not set up")
    evidence = read_login(directory, "evidence") if identity == "playbook" else None
    return login_env(login, evidence=evidence)


def identity_vault(settings: Settings, identity: Identity) -> VaultSettings:
    """`settings.vault` logged in as `identity` of a running local stack; unchanged when it has none."""
    login = read_login(identity_dir(settings), identity)
    return login_settings(settings.vault, login) if login is not None else settings.vault
