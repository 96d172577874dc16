"""Least privilege in Vault: one AppRole role and policy per identity waguard runs as.

- `playbook`: the playbook and scheduled runs (the launcher's children). Reads and rotates the Meta
  tokens and PINs beside its own token; reads the app secret, the Slack bot token and the Alertmanager
  token (posture alerts); writes the app-secret rotation window.
- `intake`: the intake service. Reads the secrets it verifies deliveries with; writes nothing.
- `evidence`: evidence signing, a second login inside each run. Reads every value under the redaction
  prefixes, creates the redaction key once, signs with the evidence key, makes data keys.
- `drill`: the drills' stand-in responder and verifier (local stack only). Reads what the drill checks;
  writes the new app secret and the consumers' token, as a person and Meta would.

Policies are rendered from the settings, so renamed paths and mounts stay covered; the files in
`deploy/vault/*.hcl` are the rendering for the default settings (a test keeps them equal). Vault
applies the most specific matching path, so an exact rule (e.g. the app secret: read only) narrows a
folder glob around it.

`setup_identities` needs an admin token (the dev server's root token, or an operator's in
production); it is idempotent. Each role's secret id goes to a file (mode 0600) that waguard's
`VaultConnection` reads again at every login, so `rotate_secret_id` takes effect without a restart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import hvac

from waguard.settings import Settings, VaultSettings
from waguard.vault.errors import guarded

Identity = Literal["playbook", "intake", "evidence", "drill"]
IDENTITIES: tuple[Identity, ...] = get_args(Identity)
TOKEN_TTL, TOKEN_MAX_TTL = "1h", "4h"  # a login lasts this long; VaultConnection logs in again on a 403


def role_name(identity: Identity) -> str:
    """The AppRole role (and policy) name of an identity, e.g. `waguard-intake`."""
    return f"waguard-{identity}"


def _folder(path: str) -> str:
    """`meta/system-user-token` -> `meta/`; a top-level path -> "" (the whole mount)."""
    head, _, _ = path.strip("/").rpartition("/")
    return f"{head}/" if head else ""


class _Policy:
    """An HCL policy built rule by rule, each with the comment that says why."""

    def __init__(self, settings: Settings, title: str) -> None:
        self.kv, self.transit = settings.vault.kv_mount, settings.vault.transit_mount
        self.lines = [f"# {title}",
                      "# Rendered by waguard.vault.identities from the settings; do not edit by hand."]

    def rule(self, path: str, caps: list[str]) -> None:
        quoted = ", ".join(f'"{c}"' for c in caps)
        self.lines.append(f'path "{path}" {{ capabilities = [{quoted}] }}')

    def kv_data(self, path: str, caps: list[str]) -> None:
        self.rule(f"{self.kv}/data/{path}", caps)

    def kv_metadata(self, path: str, caps: list[str]) -> None:
        self.rule(f"{self.kv}/metadata/{path}", caps)

    def why(self, text: str) -> None:
        self.lines += ["", f"# {text}"]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass(frozen=True)
class _Business:
    business_id: str
    app_id: str
    app_secret_path: str
    token_path: str
    window_path: str


def _other_businesses(s: Settings) -> list[_Business]:
    """The registry's businesses whose Vault paths are not the settings' (none for one business)."""
    from waguard.playbook.accounts import app_secret_path, load_registry, rotation_window_path

    found = []
    for b in load_registry(s.runbooks_dir, s).businesses:
        secret, token = app_secret_path(b, s), b.token_path or s.meta.token_path
        if (secret, token) != (s.meta.app_secret_path, s.meta.token_path):
            found.append(_Business(b.business_id, b.app_id, secret, token,
                                   rotation_window_path(s, b.app_id, secret)))
    return found


def _playbook(s: Settings) -> str:
    p = _Policy(s, "waguard-playbook: the playbook runs (launcher children, served runs).")
    tokens = _folder(s.meta.token_path)
    p.why("Tokens and PINs the runs read and rotate live beside waguard's own token "
          f"(flow parameters name paths under {tokens or 'the mount'}).")
    p.kv_data(f"{tokens}*", ["create", "read", "update"])
    p.kv_metadata(f"{tokens}*", ["read"])
    p.why("The app secret: read, every version (the old one proves rotation). "
          "A person writes the new one, never a run.")
    p.kv_data(s.meta.app_secret_path, ["read"])
    p.kv_metadata(s.meta.app_secret_path, ["read"])
    p.why("Slack: the bot token posts the incident thread.")
    p.kv_data(s.slack.bot_token_path, ["read"])
    p.why("The app-secret rotation window the intake honours (written by open-rotation-window).")
    p.kv_data(s.intake.rotation_window_path, ["create", "update"])
    p.why("The posture audit reports critical findings to the intake as an Alertmanager sender.")
    p.kv_data(s.intake.alertmanager_token_path, ["read"])
    for b in _other_businesses(s):
        p.why(f"Business {b.business_id} (app {b.app_id}, runbooks/businesses.yaml): its tokens, its app "
              "secret (read only) and that app's rotation window.")
        p.kv_data(f"{_folder(b.token_path)}*", ["create", "read", "update"])
        p.kv_metadata(f"{_folder(b.token_path)}*", ["read"])
        p.kv_data(b.app_secret_path, ["read"])
        p.kv_metadata(b.app_secret_path, ["read"])
        p.kv_data(b.window_path, ["create", "update"])
    return p.text()


def _intake(s: Settings) -> str:
    p = _Policy(s, "waguard-intake: the intake service verifies deliveries; it writes nothing.")
    p.why("Meta webhook signatures: the app secret (current and the previous version inside its window).")
    p.kv_data(s.meta.app_secret_path, ["read"])
    p.kv_data(s.intake.rotation_window_path, ["read"])
    p.why("A GitHub alert's leaked value is matched (keyed hash) against waguard's token.")
    p.kv_data(s.meta.token_path, ["read"])
    p.why("The other senders' secrets and the Slack request-signing secret.")
    for path in (s.intake.alertmanager_token_path, s.intake.github_secret_path, s.intake.grafana_secret_path,
                 s.intake.meta_verify_token_path, s.slack.signing_secret_path):
        p.kv_data(path, ["read"])
    for b in _other_businesses(s):
        p.why(f"Business {b.business_id}: its app's webhook signatures (and window), its token (GitHub).")
        for path in (b.app_secret_path, b.window_path, b.token_path):
            p.kv_data(path, ["read"])
    return p.text()


def _evidence(s: Settings) -> str:
    p = _Policy(s, "waguard-evidence: evidence bundles, redacted and signed "
                "(a second login inside each run).")
    p.why("Redaction: every value (all versions) under the secret prefixes, so none can reach a bundle.")
    for prefix in s.evidence.secret_prefixes:
        p.kv_data(f"{prefix}*", ["read"])
        p.kv_metadata(f"{prefix}*", ["read", "list"])
    p.why("The redaction key: created once on first use (cas=0), never overwritten.")
    p.kv_data(s.evidence.redaction_key_path, ["create", "read"])
    p.kv_metadata(s.evidence.redaction_key_path, ["read"])
    p.why("Signing (ed25519; the key is created and rotated by an admin, not here) and its public keys.")
    key = s.vault.evidence_key
    p.rule(f"{p.transit}/sign/{key}", ["update"])
    p.rule(f"{p.transit}/keys/{key}", ["read"])
    p.why("Data keys that encrypt bundles (evidence.encrypt); opening one is an operator's job.")
    p.rule(f"{p.transit}/datakey/plaintext/{s.evidence.encryption_key}", ["update"])
    return p.text()


def _drill(s: Settings) -> str:
    p = _Policy(s, "waguard-drill: the drills' stand-in responder, world reset, verifier and canary scan "
                "(the local stack and game days; a production deployment has no drill role).")
    p.why("Reads every secret the drill checks or scans for.")
    for prefix in s.evidence.secret_prefixes:
        p.kv_data(f"{prefix}*", ["read"])
        p.kv_metadata(f"{prefix}*", ["read", "list"])
    p.why("What the people and Meta it stands in for write: the new app secret, the consumers' token, "
          "and the numbers' PIN each scenario's world starts from.")
    from waguard.drills.world import MESSAGING_TOKEN_PATH, PIN_PATH  # the drill world's token and PIN

    for path in (s.meta.app_secret_path, MESSAGING_TOKEN_PATH, PIN_PATH):
        p.kv_data(path, ["create", "read", "update"])
    return p.text()


RENDER = {"playbook": _playbook, "intake": _intake, "evidence": _evidence, "drill": _drill}


def render_policies(settings: Settings) -> dict[Identity, str]:
    """Each identity's HCL policy for these settings' paths, mounts and keys."""
    return {identity: RENDER[identity](settings) for identity in IDENTITIES}


# -- roles and their credentials ----------------------------------------------------------------


@dataclass(frozen=True)
class RoleLogin:
    """Where one identity's login is: its role id (not secret) and the file holding its secret id."""

    identity: Identity
    role_id: str
    secret_id_file: Path


def _write_private(path: Path, value: str) -> None:
    """Replace `path` atomically with `value`, readable by this user only (a reader never sees half)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value)
    os.replace(tmp, path)


def credential_files(directory: Path, identity: Identity) -> tuple[Path, Path]:
    """(role-id file, secret-id file) of an identity under `directory`."""
    return directory / f"{identity}.role-id", directory / f"{identity}.secret-id"


def setup_identities(hv: hvac.Client, settings: Settings, directory: Path, *,
                     identities: tuple[Identity, ...] = IDENTITIES, approle_mount: str | None = None,
                     prefix: str = "") -> dict[Identity, RoleLogin]:
    """Write each identity's policy and AppRole role, and a fresh secret id into `directory`. Blocking.

    Needs an admin token. Safe to run again: policies and roles are overwritten, and each run issues
    a new secret id (older ones keep working until destroyed; see `rotate_secret_id`). `prefix`
    prefixes role and policy names (tests sharing one server).
    """
    mount = approle_mount or settings.vault.approle_mount
    addr = str(hv.url)
    methods = guarded(lambda: hv.sys.list_auth_methods(), op="list auth methods", addr=addr)
    if f"{mount}/" not in (methods.get("data") or methods):
        guarded(lambda: hv.sys.enable_auth_method("approle", path=mount), op="enable AppRole", addr=addr)
    policies = render_policies(settings)
    logins: dict[Identity, RoleLogin] = {}
    for identity in identities:
        name = prefix + role_name(identity)
        guarded(lambda n=name, t=policies[identity]: hv.sys.create_or_update_policy(n, t),  # type: ignore[misc]
                op="write policy", addr=addr, path=name)
        guarded(lambda n=name: hv.auth.approle.create_or_update_approle(  # type: ignore[misc]
            n, token_policies=[n], token_ttl=TOKEN_TTL, token_max_ttl=TOKEN_MAX_TTL, mount_point=mount),
            op="write AppRole role", addr=addr, path=name)
        role_id = str(guarded(lambda n=name: hv.auth.approle.read_role_id(n, mount_point=mount),  # type: ignore[misc]
                              op="read role id", addr=addr, path=name)["data"]["role_id"])
        role_file, secret_file = credential_files(directory, identity)
        _write_private(role_file, role_id)
        _issue_secret_id(hv, name, mount, secret_file)
        logins[identity] = RoleLogin(identity, role_id, secret_file)
    return logins


def _issue_secret_id(hv: hvac.Client, role: str, mount: str, secret_id_file: Path) -> str:
    """A new secret id for `role`, written to its file; returns the new id's accessor."""
    body = guarded(lambda: hv.auth.approle.generate_secret_id(role, mount_point=mount),
                   op="generate secret id", addr=str(hv.url), path=role)
    _write_private(secret_id_file, body["data"]["secret_id"])
    return str(body["data"]["secret_id_accessor"])


def rotate_secret_id(hv: hvac.Client, role: str, secret_id_file: Path, *, mount: str = "approle") -> int:
    """Issue a new secret id into `secret_id_file`, then destroy every other secret id of `role`.

    Running processes keep their current token; their next login (at expiry, or after a revoke)
    reads the new file, so nothing restarts. Returns how many old secret ids were destroyed.
    """
    addr = str(hv.url)
    keep = _issue_secret_id(hv, role, mount, secret_id_file)
    try:
        listed = hv.auth.approle.list_secret_id_accessors(role, mount_point=mount)
    except hvac.exceptions.InvalidPath:
        return 0
    old = [a for a in listed["data"]["keys"] if a != keep]
    for accessor in old:
        guarded(lambda a=accessor: hv.auth.approle.destroy_secret_id_accessor(role, a, mount_point=mount),  # type: ignore[misc]
                op="destroy secret id", addr=addr, path=role)
    return len(old)


def login_settings(vault: VaultSettings, login: RoleLogin) -> VaultSettings:
    """`vault` with its login switched to `login`'s AppRole identity."""
    return vault.model_copy(update={"auth_method": "approle", "role_id": login.role_id,
                                    "secret_id_file": login.secret_id_file, "token": None})


def read_login(directory: Path, identity: Identity) -> RoleLogin | None:
    """The login `setup_identities` wrote for `identity` under `directory`, or None if there is none."""
    role_file, secret_file = credential_files(directory, identity)
    if not (role_file.is_file() and secret_file.is_file()):
        return None
    return RoleLogin(identity, role_file.read_text(encoding="utf-8").strip(), secret_file)


def login_env(login: RoleLogin, *, evidence: RoleLogin | None = None) -> dict[str, str]:
    """Environment that makes a waguard process log in as `login` (and sign evidence as `evidence`)."""
    env = {"WAGUARD_VAULT__AUTH_METHOD": "approle", "WAGUARD_VAULT__ROLE_ID": login.role_id,
           "WAGUARD_VAULT__SECRET_ID_FILE": str(login.secret_id_file.absolute())}
    if evidence is not None:
        env["WAGUARD_VAULT__EVIDENCE_ROLE_ID"] = evidence.role_id
        env["WAGUARD_VAULT__EVIDENCE_SECRET_ID_FILE"] = str(evidence.secret_id_file.absolute())
    return env


__all__ = ["IDENTITIES", "Identity", "RoleLogin", "credential_files", "login_env",
           "login_settings", "read_login", "render_policies", "role_name", "rotate_secret_id",
           "setup_identities"]


def write_policy_files(directory: Path, settings: Settings) -> list[Path]:
    """Write `<role>.hcl` for every identity into `directory` (what `deploy/vault/` ships)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for identity, text in render_policies(settings).items():
        path = directory / f"{role_name(identity)}.hcl"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m waguard.vault.identities deploy/vault: render for these settings
    import sys

    from waguard.settings import load_settings

    for written_path in write_policy_files(Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/vault"),
                                           load_settings()):
        print(written_path)
