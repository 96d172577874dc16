"""The standing-hygiene policy: credential ages, the grace window, named admins and the inventory.

One YAML file, `runbooks/hygiene.policy.yaml`, read by the two scheduled deployments
(`credential-rotation`, `posture-audit`). Validated like the playbook policies (`extra="forbid"`, a
ConfigError naming the file and every bad key). The named admins must be the account-takeover
policy's: the audit calls "unknown" exactly the admins that playbook would remove.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from waguard.errors import ConfigError
from waguard.playbook.policy import load_policy, load_yaml_model

HARD_MAX_AGE_DAYS = 90  # the practice's ceiling for a long-lived credential (threat model)
HYGIENE_POLICY_FILE = "hygiene.policy.yaml"

Role = Literal["ADMIN", "EMPLOYEE", "FINANCE_EDITOR", "FINANCE_ANALYST", "DEVELOPER"]


class _Model(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}


class Ages(_Model):
    """How old a credential may get. Rotation starts at `rotate_after_days`; nothing passes `max_age_days`."""

    rotate_after_days: int = Field(60, ge=1, description="Rotate a credential this old (or older).")
    max_age_days: int = Field(90, ge=1, le=HARD_MAX_AGE_DAYS, description="Never older than this.")
    expiry_margin_days: int = Field(
        10, ge=1, description="Rotate an expiring token this long before it expires, whatever its age "
        "(Meta's 60-day tokens would otherwise die before rotate_after_days).")

    @model_validator(mode="after")
    def _ordered(self) -> Ages:
        if self.rotate_after_days >= self.max_age_days:
            raise ValueError("rotate_after_days must be below max_age_days")
        return self


class ManagedToken(_Model):
    """A system-user token waguard rotates: where consumers read it and who owns it."""

    path: str = Field(min_length=1, description="Vault KV path consumers read the token from.")
    system_user_id: str = Field(pattern=r"^[0-9]+$")
    scopes: list[str] = Field(min_length=1)


class KnownUser(_Model):
    """A person who may be in the Business Manager, with the highest role they may hold."""

    name: str
    role: Role


class Inventory(_Model):
    """What the business is supposed to contain; anything else is a finding."""

    business_users: dict[str, KnownUser] = Field(description="Business user id -> who and the role allowed.")
    system_users: list[str] = Field(description="System user ids that belong.")
    apps: list[str] = Field(description="App ids that may subscribe to the WABAs.")
    wabas: list[str] = Field(min_length=1, description="WABA ids tokens may be scoped to.")
    display_names: dict[str, str] = Field(
        default_factory=dict, description="Phone number id -> the verified display name it must keep.")


class HygienePolicy(_Model):
    """What `credential-rotation` and `posture-audit` enforce and look for."""

    tokens: Ages = Field(default_factory=Ages)
    pin: Ages = Field(default_factory=Ages)
    app_secret: Ages = Field(default_factory=Ages)
    grace_window_s: int = Field(
        3600, ge=0, le=7 * 86400,
        description="How long a replaced token stays valid so consumers can reload it from Vault.")
    manual_step_timeout_s: int = Field(
        86400, ge=60, description="How long the rotation waits for the app secret's dashboard step.")
    managed_tokens: list[ManagedToken] = Field(min_length=1)
    pin_path: str = Field("meta/two-step-pin", description="Vault KV path of the numbers' two-step PIN.")
    dual_secret_window_s: int = Field(900, ge=0, description="Old app secret's webhook window after a reset.")
    template_window_s: int = Field(86400, ge=60, description="How far back 'newly approved' templates reach.")
    allowed_link_domains: list[str] = Field(
        min_length=1, description="Domains (and their subdomains) template links may point at.")
    named_admins: list[str] = Field(min_length=1, description="Business users allowed the ADMIN role.")
    inventory: Inventory

    @model_validator(mode="after")
    def _consistent(self) -> HygienePolicy:
        admins = {uid for uid, u in self.inventory.business_users.items() if u.role == "ADMIN"}
        if admins != set(self.named_admins):
            raise ValueError(
                f"inventory admins {sorted(admins)} differ from named_admins {sorted(self.named_admins)}"
            )
        paths = [t.path for t in self.managed_tokens]
        if len(set(paths)) != len(paths):
            raise ValueError("managed_tokens name a Vault path twice")
        return self


def load_hygiene_policy(runbooks_dir: Path) -> HygienePolicy:
    """Read and validate the hygiene policy, and check its admins against the account-takeover policy.

    Raises:
        ConfigError: naming the file and every invalid key, or the disagreement between the two files.
    """
    path = runbooks_dir / HYGIENE_POLICY_FILE
    policy = load_yaml_model(path, HygienePolicy, "hygiene policy")
    takeover = load_policy(runbooks_dir, "account_takeover")
    if set(takeover.named_admins) != set(policy.named_admins):
        raise ConfigError(f"hygiene policy {path}: named_admins {sorted(policy.named_admins)} differ from "
                          f"account-takeover's {sorted(takeover.named_admins)}; the audit and the playbook "
                          "must agree on who stays")
    return policy
