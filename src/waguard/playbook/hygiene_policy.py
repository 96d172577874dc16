"""The standing-hygiene policy: credential ages, the grace window, what links templates may carry; and,
from the business registry, who and what belongs (named admins, the inventory, the managed tokens).

`runbooks/hygiene.policy.yaml` holds only the rules the two scheduled deployments (`credential-rotation`,
`posture-audit`) apply; the facts about the business come from `runbooks/businesses.yaml` (the one
place responders list people, apps, WABAs, tokens and the PIN's path). Both are validated like the
playbook policies (`extra="forbid"`, a ConfigError naming the file and every bad key); a fact the
deployments need and the registry lacks is a ConfigError naming the registry's key. The named admins
must be the account-takeover policy's: the audit calls "unknown" exactly the admins that playbook
would remove.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from waguard.errors import ConfigError
from waguard.playbook.accounts import REGISTRY_FILE, KnownUser, Registry, SystemUserToken
from waguard.playbook.policy import load_policy, load_yaml_model

HARD_MAX_AGE_DAYS = 90  # the practice's ceiling for a long-lived credential (threat model)
HYGIENE_POLICY_FILE = "hygiene.policy.yaml"

ManagedToken = SystemUserToken  # a system-user token waguard rotates: the registry's entry for it
__all__ = ["Ages", "HygienePolicy", "HygieneRules", "Inventory", "KnownUser", "ManagedToken",
           "load_hygiene_policy"]


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


class HygieneRules(_Model):
    """`hygiene.policy.yaml`: what the scheduled deployments enforce (never who or what belongs)."""

    tokens: Ages = Field(default_factory=Ages)
    pin: Ages = Field(default_factory=Ages)
    app_secret: Ages = Field(default_factory=Ages)
    grace_window_s: int = Field(
        3600, ge=0, le=7 * 86400,
        description="How long a replaced token stays valid so consumers can reload it from Vault.")
    manual_step_timeout_s: int = Field(
        86400, ge=60, description="How long the rotation waits for the app secret's dashboard step.")
    dual_secret_window_s: int = Field(900, ge=0, description="Old app secret's webhook window after a reset.")
    template_window_s: int = Field(86400, ge=60, description="How far back 'newly approved' templates reach.")
    allowed_link_domains: list[str] = Field(
        min_length=1, description="Domains (and their subdomains) template links may point at.")


class Inventory(_Model):
    """What the business is supposed to contain (from the registry); anything else is a finding."""

    business_users: dict[str, KnownUser] = Field(description="Business user id -> who and the role allowed.")
    system_users: list[str] = Field(description="System user ids that belong.")
    apps: list[str] = Field(description="App ids that may subscribe to the WABAs.")
    wabas: list[str] = Field(min_length=1, description="WABA ids tokens may be scoped to.")
    display_names: dict[str, str] = Field(
        default_factory=dict, description="Phone number id -> the verified display name it must keep.")


class HygienePolicy(HygieneRules):
    """The rules, with the registry's facts about the business the deployments run on."""

    managed_tokens: list[ManagedToken] = Field(min_length=1)
    pin_path: str = Field(min_length=1, description="Vault KV path of the numbers' two-step PIN.")
    named_admins: list[str] = Field(min_length=1, description="Business users allowed the ADMIN role.")
    inventory: Inventory


def from_registry(rules: HygieneRules, registry: Registry, waba_id: str | None,
                  where: str = f"runbooks/{REGISTRY_FILE}") -> HygienePolicy:
    """The policy for the business that holds `waba_id` (default: the registry's only business) (pure).

    Raises:
        ConfigError: naming `where` and the registry key the deployments need and it lacks.
    """
    places = [(b, i, w, j) for i, b in enumerate(registry.businesses) for j, w in enumerate(b.wabas)
              if waba_id is None or w.waba_id == waba_id]
    if not places or (waba_id is None and len(registry.businesses) > 1):
        what = f"no business lists WABA {waba_id}" if waba_id else "several businesses and no WABA named"
        raise ConfigError(f"{where}: {what}; the hygiene deployments run on the settings' WABA "
                          "(WAGUARD_META__WABA_ID)")
    business, i, waba, j = places[0]
    key = f"businesses[{i}]"
    if not business.business_users:
        raise ConfigError(f"{where}: {key}.business_users is missing: posture-audit needs the people who "
                          "belong (the named admins are those with role ADMIN)")
    admins = sorted(uid for uid, u in business.business_users.items() if u.role == "ADMIN")
    if not admins:
        raise ConfigError(f"{where}: {key}.business_users names no ADMIN: account takeover would remove "
                          "everyone")
    if waba.pin_path is None:
        raise ConfigError(f"{where}: {key}.wabas[{j}].pin_path is missing: credential-rotation rotates the "
                          f"two-step PIN of WABA {waba.waba_id} there")
    tokens = list({t.path: t for w in business.wabas for t in w.tokens}.values())
    if not tokens:
        raise ConfigError(f"{where}: {key}.wabas[*].tokens is empty: credential-rotation needs the "
                          "system-user tokens it manages")
    inventory = Inventory(
        business_users=dict(business.business_users),
        system_users=sorted({t.system_user_id for t in tokens}),
        apps=[business.app_id],
        wabas=[w.waba_id for w in business.wabas],
        display_names={n: name for w in business.wabas for n, name in w.display_names.items()},
    )
    return HygienePolicy(**rules.model_dump(), managed_tokens=tokens, pin_path=waba.pin_path,
                         named_admins=admins, inventory=inventory)


def load_hygiene_policy(runbooks_dir: Path, waba_id: str | None = None) -> HygienePolicy:
    """Read and validate the rules and the registry, and check the admins against account takeover's.

    Raises:
        ConfigError: naming the file and every invalid key, a fact the registry lacks, or the
            disagreement between the registry and the account-takeover policy.
    """
    rules = load_yaml_model(runbooks_dir / HYGIENE_POLICY_FILE, HygieneRules, "hygiene policy")
    path = runbooks_dir / REGISTRY_FILE
    if not path.exists():
        raise ConfigError(f"{path} is missing: the hygiene deployments read the named admins, the inventory "
                          "and the managed tokens from the business registry")
    policy = from_registry(rules, load_yaml_model(path, Registry, "business registry"), waba_id, str(path))
    takeover = load_policy(runbooks_dir, "account_takeover")
    if set(takeover.named_admins) != set(policy.named_admins):
        raise ConfigError(f"{path}: the ADMINs in business_users {policy.named_admins} differ from "
                          f"account-takeover.policy.yaml's named_admins {sorted(takeover.named_admins)}; "
                          "the audit and the playbook must agree on who stays")
    return policy
