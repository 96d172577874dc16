"""The business registry (`runbooks/businesses.yaml`): which business, app and WABAs waguard protects, and
for each WABA the site-specific ids a playbook acts on (system users and their tokens' Vault paths, the
two-step PIN's path). A run looks its WABA up here, so nothing site-specific is a default in code.

Without the file, the settings' one business/app/WABA is the registry (and it names no system user:
a token step then needs its ids as parameters). A WABA the registry does not list is refused: an
alert naming a stranger's WABA starts nothing that acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from waguard.errors import ConfigError
from waguard.playbook.policy import load_yaml_model
from waguard.settings import Settings

REGISTRY_FILE = "businesses.yaml"
GRAPH_ID = r"^[0-9]{1,32}$"
Role = Literal["ADMIN", "EMPLOYEE", "FINANCE_EDITOR", "FINANCE_ANALYST", "DEVELOPER"]


class _Model(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}


class SystemUserToken(_Model):
    """A system-user token waguard may revoke and reissue: where consumers read it, its owner, its scopes."""

    path: str = Field(min_length=1, description="Vault KV path consumers read the token from.")
    system_user_id: str = Field(pattern=GRAPH_ID, description="The system user the token belongs to.")
    scopes: tuple[str, ...] = Field(min_length=1, description="Scopes a reissued token gets.")


class KnownUser(_Model):
    """A person who may be in the Business Manager, with the highest role they may hold."""

    name: str
    role: Role


class WabaEntry(_Model):
    waba_id: str = Field(pattern=GRAPH_ID)
    phone_number_ids: tuple[str, ...] = Field(
        default=(), description="Its phone numbers' Graph ids (with display_names' keys: the numbers an "
        "alert may name to say which WABA it is about).")
    pin_path: str | None = Field(None, min_length=1, description="Vault KV path of its numbers' two-step PIN")
    tokens: tuple[SystemUserToken, ...] = Field(
        default=(), description="Tokens with access to this WABA; the first is the consumers' token, the one "
        "a leak is taken to be when the alert names none.")
    display_names: dict[str, str] = Field(
        default_factory=dict, description="Phone number id -> the verified display name it must keep.")


class BusinessEntry(_Model):
    business_id: str = Field(pattern=GRAPH_ID)
    app_id: str = Field(pattern=GRAPH_ID)
    app_secret_path: str | None = Field(
        None, min_length=1, description="Vault KV path of the app's secret (keys appsecret_proof and its "
        "webhooks' signatures); unset: the settings' meta.app_secret_path.")
    token_path: str | None = Field(
        None, min_length=1, description="Vault KV path of the system-user token waguard acts on this "
        "business with; unset: the settings' meta.token_path.")
    wabas: tuple[WabaEntry, ...] = Field(min_length=1)
    business_users: dict[str, KnownUser] = Field(
        default_factory=dict, description="Business user id -> who, and the highest role they may hold; "
        "the ADMINs are the named admins. Anyone else is a posture finding.")


class Registry(_Model):
    businesses: tuple[BusinessEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _each_id_once(self) -> Registry:
        """An app, WABA or phone number listed twice would make the intake's lookup ambiguous."""
        seen: dict[str, str] = {}

        def once(kind: str, value: str, key: str) -> None:
            first = seen.setdefault(f"{kind}:{value}", key)
            if first != key:
                raise ValueError(f"{key}: {kind} {value} is listed twice (also at {first})")

        for b, business in enumerate(self.businesses):
            once("app", business.app_id, f"businesses.{b}.app_id")
            # Two apps never share a secret, nor a token (a token is issued for one app, and its
            # appsecret_proof is made with that app's secret). Unset: both would be the settings' one.
            once("app secret path", business.app_secret_path or "(the settings' meta.app_secret_path)",
                 f"businesses.{b}.app_secret_path")
            once("token path", business.token_path or "(the settings' meta.token_path)",
                 f"businesses.{b}.token_path")
            for w, waba in enumerate(business.wabas):
                once("WABA", waba.waba_id, f"businesses.{b}.wabas.{w}.waba_id")
                for number in dict.fromkeys([*waba.phone_number_ids, *waba.display_names]):
                    once("phone number", number, f"businesses.{b}.wabas.{w}.phone_number_ids")
        return self


@dataclass(frozen=True)
class Account:
    """What one run acts on: its business, app and WABA, and that WABA's site-specific ids."""

    business_id: str
    app_id: str
    waba_id: str
    pin_path: str | None
    tokens: tuple[SystemUserToken, ...]
    app_secret_path: str  # Vault: the app's secret (resolved: never None)
    token_path: str  # Vault: the token waguard calls Graph with for this business
    registered_admins: tuple[str, ...] = ()  # the registry's ADMINs of this business

    def named_admins(self, settings: Settings, policy_admins: list[str]) -> list[str]:
        """The business users account takeover keeps: this business's ADMINs in the registry. The
        policy file's list serves only the settings' own business (one list cannot name every
        business's people: used for another business it would remove all of that business's users).

        Raises:
            ConfigError: another business lists no ADMIN in the registry.
        """
        if self.registered_admins:
            return list(self.registered_admins)
        if self.business_id == settings.meta.business_id and policy_admins:
            return list(policy_admins)
        raise ConfigError(f"business {self.business_id} lists no ADMIN under business_users in runbooks/"
                          f"{REGISTRY_FILE}: account takeover would remove every user of it")

    def token(self, path: str | None, system_user_id: str | None, what: str) -> SystemUserToken:
        """The token a step acts on: the one at `path` (default: the consumers' token), its owner checked.

        Raises:
            ConfigError: the registry knows no such token for this WABA, or names another owner.
        """
        path = path or (self.tokens[0].path if self.tokens else None)
        known = next((t for t in self.tokens if t.path == path), None)
        if known is None:
            raise ConfigError(f"{what}: no token {'at ' + path if path else ''} is registered for WABA "
                              f"{self.waba_id} in runbooks/{REGISTRY_FILE}; add it with its system user "
                              "and scopes")
        if system_user_id is not None and system_user_id != known.system_user_id:
            raise ConfigError(f"{what}: the token at {path} belongs to system user {known.system_user_id} "
                              f"per runbooks/{REGISTRY_FILE}, not {system_user_id}")
        return known

    def pin(self, path: str | None) -> str:
        """The Vault path for the two-step PIN: the parameter, else the registry's."""
        if path or self.pin_path:
            return path or self.pin_path  # type: ignore[return-value]
        raise ConfigError(f"no pin_path for WABA {self.waba_id} in runbooks/{REGISTRY_FILE}, and none given")


def app_secret_path(business: BusinessEntry, settings: Settings) -> str:
    """Where the business's app secret is in Vault: the registry's path, else the settings'."""
    return business.app_secret_path or settings.meta.app_secret_path


def rotation_window_path(settings: Settings, app_id: str, app_secret_path: str) -> str:
    """Where the leaked-secret playbook opens the previous app secret's window for one app (the intake
    reads it): the settings' path for the settings' app secret, one beside it per other app, so two
    apps rotated at once never share (or overwrite) a window."""
    base = settings.intake.rotation_window_path
    return base if app_secret_path == settings.meta.app_secret_path else f"{base}/{app_id}"


def _redacted(registry: Registry, settings: Settings, path: Path) -> None:
    """A business's own app secret and token must be where evidence redaction reads (else a bundle
    could carry them in clear)."""
    prefixes = tuple(settings.evidence.secret_prefixes)
    for b, business in enumerate(registry.businesses):
        for key in ("app_secret_path", "token_path"):
            value = getattr(business, key)
            if value is not None and not value.startswith(prefixes):
                raise ConfigError(f"business registry {path} is invalid:\n  businesses.{b}.{key}: {value} is "
                                  f"under none of evidence.secret_prefixes ({', '.join(prefixes)}), so "
                                  "evidence would not redact it")


def load_registry(runbooks_dir: Path, settings: Settings) -> Registry:
    """The registry file, or the settings' single business when there is none.

    Raises:
        ConfigError: naming the file and every invalid key.
    """
    path = runbooks_dir / REGISTRY_FILE
    if path.exists():
        registry = load_yaml_model(path, Registry, "business registry")
        _redacted(registry, settings, path)
        return registry
    meta = settings.meta
    return Registry(businesses=(BusinessEntry(business_id=meta.business_id, app_id=meta.app_id,
                                              wabas=(WabaEntry(waba_id=meta.waba_id),)),))


def account_for(settings: Settings, waba_id: str | None) -> Account:
    """The account a run on `waba_id` (default: the settings' WABA) acts on.

    Raises:
        ConfigError: the WABA is not in the registry.
    """
    waba_id = waba_id or settings.meta.waba_id
    registry = load_registry(settings.runbooks_dir, settings)
    for business in registry.businesses:
        for waba in business.wabas:
            if waba.waba_id == waba_id:
                admins = tuple(uid for uid, user in business.business_users.items() if user.role == "ADMIN")
                return Account(business.business_id, business.app_id, waba.waba_id, waba.pin_path,
                               waba.tokens, app_secret_path(business, settings),
                               business.token_path or settings.meta.token_path, admins)
    raise ConfigError(f"WABA {waba_id} is not in runbooks/{REGISTRY_FILE}: waguard acts only on "
                      "registered WABAs")
