"""What the Meta simulator starts from: a pydantic `Seed`, loadable from a dict, YAML or JSON.

One seed describes one app and one business portfolio with its WABAs, phone numbers, templates,
people, system users, WABA assignments, webhook subscriptions and access tokens; `other_businesses`
and `other_apps` add more portfolios, each WABA and user naming its own (`business_id`, default the
seed's `business`), so each business reads only its own people and WABAs. The simulator may
hold secret values (token values, the app secret, PINs) in its state because it stands in for
Meta; it never writes them to its request record (see `record.py`).

Enumerations follow Meta's OpenAPI spec (v23.0) where the spec enumerates a field, so every answer
built from a valid seed conforms to the spec.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GraphId = str  # digits only, as Graph object ids are

NumberStatus = Literal[
    "CONNECTED", "DISCONNECTED", "PENDING", "FLAGGED", "RESTRICTED", "RATE_LIMITED", "BANNED",
    "MIGRATED", "DELETED", "UNVERIFIED",
]  # fmt: skip
QualityRating = Literal["GREEN", "YELLOW", "RED", "NA"]
CodeVerificationStatus = Literal["VERIFIED", "UNVERIFIED"]
NameStatus = Literal["APPROVED", "AVAILABLE_WITHOUT_REVIEW", "DECLINED", "EXPIRED", "PENDING_REVIEW", "NONE"]
PlatformType = Literal["CLOUD_API", "ON_PREMISE", "NOT_APPLICABLE"]
MessagingLimitTier = Literal["TIER_50", "TIER_250", "TIER_1K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED"]
TemplateStatus = Literal[
    "APPROVED", "ARCHIVED", "DELETED", "DISABLED", "IN_APPEAL", "LIMIT_EXCEEDED", "PAUSED", "PENDING",
    "PENDING_DELETION", "REJECTED",
]  # fmt: skip
TemplateCategory = Literal["AUTHENTICATION", "MARKETING", "UTILITY"]
BusinessRole = Literal["ADMIN", "EMPLOYEE", "FINANCE_EDITOR", "FINANCE_ANALYST", "DEVELOPER"]
WabaTask = Literal[
    "MANAGE", "DEVELOP", "MANAGE_TEMPLATES", "MANAGE_PHONE", "VIEW_COST", "MANAGE_EXTENSIONS",
    "VIEW_PHONE_ASSETS", "MANAGE_PHONE_ASSETS", "VIEW_TEMPLATES", "MESSAGING",
]  # fmt: skip
TokenType = Literal["SYSTEM_USER", "USER"]

DIGITS = r"^[0-9]+$"
PIN_PATTERN = r"^[0-9]{6}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppSeed(_Model):
    """The Meta app: its secret keys appsecret_proof and webhook signatures."""

    id: GraphId = Field("1000000001", pattern=DIGITS)
    name: str = "waguard"
    secret: str = Field(min_length=8)
    require_appsecret_proof: bool = Field(False, description="The dashboard's 'Require App Secret' switch.")
    callback_url: str | None = Field(None, description="The app's default webhook callback (dashboard).")
    verify_override_callbacks: bool = Field(
        False,
        description="Meta calls an override_callback_uri with a hub.challenge before accepting it; "
        "off by default so tests need no live callback.",
    )


class BusinessSeed(_Model):
    """The business portfolio (Business Manager)."""

    id: GraphId = Field("2000000001", pattern=DIGITS)
    name: str


class WabaSeed(_Model):
    """A WhatsApp Business Account owned by the business."""

    id: GraphId = Field(pattern=DIGITS)
    name: str
    currency: str = "USD"
    timezone_id: str = "1"
    business_id: GraphId | None = Field(None, pattern=DIGITS, description="Its owner; None: the seed's "
                                        "business.")


class PhoneNumberSeed(_Model):
    """A business phone number on a WABA, with its registration and two-step PIN state."""

    id: GraphId = Field(pattern=DIGITS)
    waba_id: GraphId = Field(pattern=DIGITS)
    display_phone_number: str
    verified_name: str
    status: NumberStatus = "CONNECTED"
    quality_rating: QualityRating = "GREEN"
    code_verification_status: CodeVerificationStatus = "VERIFIED"
    name_status: NameStatus = "APPROVED"
    platform_type: PlatformType = "CLOUD_API"
    registered: bool = True
    two_step_pin: str | None = Field(None, pattern=PIN_PATTERN)
    messaging_limit_tier: MessagingLimitTier = "TIER_1K"
    throughput_level: Literal["STANDARD", "HIGH", "NOT_APPLICABLE"] = "STANDARD"
    account_mode: Literal["LIVE", "SANDBOX"] = "LIVE"
    is_official_business_account: bool = False
    country_code: str = "US"
    country_dial_code: str = "1"
    override_callback_uri: str | None = Field(None, description="Phone-number-level webhook override.")


class TemplateSeed(_Model):
    """A message template (one language variant of a name)."""

    id: GraphId = Field(pattern=DIGITS)
    waba_id: GraphId = Field(pattern=DIGITS)
    name: str = Field(pattern=r"^[a-z0-9_]{1,512}$")
    language: str
    status: TemplateStatus = "APPROVED"
    category: TemplateCategory = "UTILITY"
    components: list[dict[str, Any]] = Field(default_factory=list)
    reason: str | None = Field(None, description="rejected_reason, e.g. PROMOTIONAL, SCAM, INVALID_FORMAT.")
    quality_score: Literal["GREEN", "YELLOW", "RED", "UNKNOWN"] = "UNKNOWN"
    created_time: int = Field(0, ge=0, description="Unix seconds; what since/until filter on.")


class BusinessUserSeed(_Model):
    """A person in the business portfolio."""

    id: GraphId = Field(pattern=DIGITS)
    name: str
    email: str
    role: BusinessRole = "EMPLOYEE"
    tasks: list[str] = Field(default_factory=list)
    business_id: GraphId | None = Field(None, pattern=DIGITS, description="Whose person; None: the seed's "
                                        "business.")
    added_time: int = Field(0, ge=0, description="Unix seconds the person joined (their Business Settings "
                            "log's first entry); 0: before the log begins, so no entry.")


class SystemUserSeed(_Model):
    """A system user of the business portfolio."""

    id: GraphId = Field(pattern=DIGITS)
    name: str
    role: Literal["ADMIN", "EMPLOYEE"] = "ADMIN"
    created_by: GraphId | None = Field(None, description="Business user id of the creator.")
    created_time: str = "2025-01-01T00:00:00+0000"
    business_id: GraphId | None = Field(None, pattern=DIGITS, description="Whose system user; None: the "
                                        "seed's business.")


class AssignmentSeed(_Model):
    """A user's (person or system user) access to a WABA."""

    waba_id: GraphId = Field(pattern=DIGITS)
    user_id: GraphId = Field(pattern=DIGITS)
    tasks: list[WabaTask] = Field(default_factory=lambda: list[WabaTask](["MANAGE"]))


class SubscribedAppSeed(_Model):
    """An app subscribed to a WABA's webhooks, with an optional WABA-level override."""

    waba_id: GraphId = Field(pattern=DIGITS)
    app_id: GraphId = Field(pattern=DIGITS)
    app_name: str
    override_callback_uri: str | None = Field(None, max_length=200)


class GranularScopeSeed(_Model):
    """A permission limited to some object ids (WABA ids for the WhatsApp scopes)."""

    scope: str
    target_ids: list[GraphId] = Field(default_factory=list)


class TokenSeed(_Model):
    """An access token. `id` is the simulator's handle for it: records and admin calls use the id."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    value: str = Field(min_length=16)
    type: TokenType = "SYSTEM_USER"
    user_id: GraphId = Field(pattern=DIGITS)
    app_id: GraphId | None = Field(None, description="Defaults to the seed's app.")
    scopes: list[str] = Field(default_factory=list)
    granular_scopes: list[GranularScopeSeed] = Field(default_factory=list)
    issued_at: int = Field(0, ge=0)
    expires_at: int = Field(0, ge=0, description="Unix seconds; 0 means never.")
    data_access_expires_at: int = Field(0, ge=0)
    valid: bool = Field(True, description="False once revoked.")


class LimitsSeed(_Model):
    """Budgets Meta enforces; defaults are generous so only tests that mean to throttle do."""

    app_calls_per_hour: int = Field(100_000, ge=1)
    waba_calls_per_hour: int = Field(50_000, ge=1)
    registration_attempts: int = Field(10, ge=1, description="register/deregister per number per window.")
    registration_window_s: float = Field(72 * 3600.0, gt=0)


class Seed(_Model):
    """Everything the simulator starts from."""

    app: AppSeed
    other_apps: list[AppSeed] = Field(
        default_factory=list, description="Apps of other businesses, each with its own secret: a token "
        "issued for one (`app_id`) is proved with that app's secret, and its webhooks signed with it.")
    business: BusinessSeed
    other_businesses: list[BusinessSeed] = Field(
        default_factory=list, description="More business portfolios: their WABAs and users name them "
        "by `business_id`.")
    wabas: list[WabaSeed] = Field(default_factory=list)
    phone_numbers: list[PhoneNumberSeed] = Field(default_factory=list)
    templates: list[TemplateSeed] = Field(default_factory=list)
    business_users: list[BusinessUserSeed] = Field(default_factory=list)
    system_users: list[SystemUserSeed] = Field(default_factory=list)
    assigned_users: list[AssignmentSeed] = Field(default_factory=list)
    subscribed_apps: list[SubscribedAppSeed] = Field(default_factory=list)
    tokens: list[TokenSeed] = Field(default_factory=list)
    limits: LimitsSeed = Field(default_factory=LimitsSeed)
    default_version: str = Field("v23.0", pattern=r"^v[0-9]+\.[0-9]+$")

    @field_validator("tokens")
    @classmethod
    def _unique_token_values(cls, tokens: list[TokenSeed]) -> list[TokenSeed]:
        if len({t.value for t in tokens}) != len(tokens) or len({t.id for t in tokens}) != len(tokens):
            raise ValueError("token ids and values must be unique")
        return tokens

    @model_validator(mode="after")
    def _consistent(self) -> Seed:
        """Graph ids are unique across object kinds and every reference points at a seeded object."""
        ids = [self.app.id, *(a.id for a in self.other_apps), self.business.id,
               *(b.id for b in self.other_businesses)]
        for group in (self.wabas, self.phone_numbers, self.templates, self.business_users, self.system_users):
            ids.extend(o.id for o in group)
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"object ids must be unique across kinds: {dupes}")
        wabas = {w.id for w in self.wabas}
        users = {u.id for u in self.business_users} | {u.id for u in self.system_users}
        for where, refs in (
            ("phone_numbers", [p.waba_id for p in self.phone_numbers]),
            ("templates", [t.waba_id for t in self.templates]),
            ("assigned_users", [a.waba_id for a in self.assigned_users]),
            ("subscribed_apps", [s.waba_id for s in self.subscribed_apps]),
        ):
            if unknown := sorted(set(refs) - wabas):
                raise ValueError(f"{where} name unknown WABAs: {unknown}")
        if unknown := sorted({a.user_id for a in self.assigned_users} - users):
            raise ValueError(f"assigned_users name unknown users: {unknown}")
        if unknown := sorted({t.user_id for t in self.tokens} - users):
            raise ValueError(f"tokens belong to unknown users: {unknown}")
        self._owners_known()
        apps = {self.app.id, *(a.id for a in self.other_apps)}
        if unknown := sorted({t.app_id for t in self.tokens if t.app_id} - apps):
            raise ValueError(f"tokens name unknown apps: {unknown}")
        return self

    def _owners_known(self) -> None:
        """Every business_id names a seeded business; a WABA's users are people of its business."""
        businesses = {self.business.id, *(b.id for b in self.other_businesses)}
        owned: list[WabaSeed | BusinessUserSeed | SystemUserSeed] = [
            *self.wabas, *self.business_users, *self.system_users]
        if unknown := sorted({o.business_id for o in owned if o.business_id} - businesses):
            raise ValueError(f"business_id names unknown businesses: {unknown}")
        owner_of = {o.id: o.business_id or self.business.id for o in owned}
        if strays := sorted(f"{a.user_id} on {a.waba_id}" for a in self.assigned_users
                            if owner_of[a.user_id] != owner_of[a.waba_id]):
            raise ValueError(f"assigned_users name users of another business than the WABA's: {strays}")


def load_seed(source: Seed | Mapping[str, Any] | str | Path) -> Seed:
    """A Seed from a Seed, a dict, or a .yaml/.yml/.json file path."""
    if isinstance(source, Seed):
        return source
    if isinstance(source, Mapping):
        return Seed.model_validate(dict(source))
    path = Path(source)
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return Seed.model_validate(data)


def random_pin() -> str:
    """A random six-digit PIN (as Meta requires: a string of 6 digits)."""
    return f"{secrets.randbelow(10**6):06d}"


def _body(text: str) -> dict[str, Any]:
    return {"type": "BODY", "text": text}


PHISHING_COMPONENTS: list[dict[str, Any]] = [
    {"type": "HEADER", "format": "TEXT", "text": "URGENT: account suspended"},
    _body("Your account has been suspended. Verify your identity within 24 hours at {{1}} or lose access "
          "permanently."),
    {"type": "BUTTONS", "buttons": [
        {"type": "URL", "text": "Verify now", "url": "https://jaspers-market-verify.example/{{1}}"},
    ]},
]  # fmt: skip

# (id, name, language, status, category, reason, days after 2026-01-01, body or components)
DEMO_TEMPLATES: list[tuple[str, str, str, str, str, str | None, int, Any]] = [
    ("5000000001", "order_update", "en_US", "APPROVED", "UTILITY", None, 0,
     "Hi {{1}}, your order {{2}} has shipped."),
    ("5000000002", "order_update", "es_ES", "APPROVED", "UTILITY", None, 1,
     "Hola {{1}}, tu pedido {{2}} ha sido enviado."),
    ("5000000003", "order_update", "pt_BR", "PAUSED", "UTILITY", None, 1,
     "Olá {{1}}, seu pedido {{2}} foi enviado."),
    ("5000000004", "login_code", "en_US", "APPROVED", "AUTHENTICATION", None, 2,
     "{{1}} is your verification code."),
    ("5000000005", "spring_sale", "en_US", "APPROVED", "MARKETING", None, 3,
     "Spring sale: 20% off everything until Sunday."),
    ("5000000006", "spring_sale", "de_DE", "REJECTED", "MARKETING", "PROMOTIONAL", 3,
     "Frühlingsangebot: 20 % Rabatt auf alles bis Sonntag."),
    ("5000000007", "winter_newsletter", "fr_FR", "DISABLED", "MARKETING", "SCAM", 4,
     "Nos nouveautés d'hiver sont arrivées !"),
    ("5000000008", "account_security_notice", "en_US", "APPROVED", "UTILITY", None, 20, PHISHING_COMPONENTS),
]  # fmt: skip
DEMO_EPOCH = 1767225600  # 2026-01-01T00:00:00Z


SIXTY_DAYS_S = 60 * 86400


def demo_seed(*, app_secret: str, system_user_token: str, now: float | None = None,
              pin: str | None = None) -> Seed:
    """A believable demo business, with the ids of `waguard.settings` defaults.

    App 1000000001, business 2000000001, WABA 3000000001; three numbers (two registered), templates in
    several languages and statuses (one DISABLED, one phishing-looking APPROVED one), two admins and
    one employee, one system user owning `system_user_token`, the app subscribed without override.
    PINs are random per call unless `pin` gives the one PIN every PIN-protected number shares (what
    the local stack keeps in Vault): read them from the returned seed. The system user's token is a
    60-day one issued a day before `now` (default: the wall clock), as a well-kept business has it.
    """
    issued = int(time.time() if now is None else now) - 86400
    waba, business, app = "3000000001", "2000000001", "1000000001"
    wa_scopes = ["whatsapp_business_management", "whatsapp_business_messaging"]
    templates = [
        TemplateSeed(
            id=tid, waba_id=waba, name=name, language=lang, status=status, category=category, reason=reason,
            created_time=DEMO_EPOCH + days * 86400,
            quality_score="GREEN" if status == "APPROVED" else "UNKNOWN",
            components=[_body(body)] if isinstance(body, str) else body,
        )
        for tid, name, lang, status, category, reason, days, body in DEMO_TEMPLATES
    ]  # fmt: skip
    admin_tasks = ["MANAGE", "DEVELOP", "ADVERTISE", "ANALYZE", "DRAFT"]
    granular = [GranularScopeSeed(scope=s, target_ids=[waba]) for s in wa_scopes]
    granular.append(GranularScopeSeed(scope="business_management", target_ids=[business]))
    return Seed(
        app=AppSeed(id=app, name="Jasper's Market Bot", secret=app_secret),
        business=BusinessSeed(id=business, name="Jasper's Market"),
        wabas=[WabaSeed(id=waba, name="Jasper's Market Support")],
        phone_numbers=[
            PhoneNumberSeed(id="4000000001", waba_id=waba, display_phone_number="+1 555-010-0001",
                            verified_name="Jasper's Market", two_step_pin=pin or random_pin(),
                            messaging_limit_tier="TIER_10K"),
            PhoneNumberSeed(id="4000000002", waba_id=waba, display_phone_number="+1 555-010-0002",
                            verified_name="Jasper's Market", quality_rating="YELLOW",
                            two_step_pin=pin or random_pin()),
            PhoneNumberSeed(id="4000000003", waba_id=waba, display_phone_number="+1 555-010-0003",
                            verified_name="Jasper's Ice Cream", status="PENDING", registered=False,
                            platform_type="NOT_APPLICABLE", code_verification_status="UNVERIFIED",
                            name_status="PENDING_REVIEW", messaging_limit_tier="TIER_250"),
        ],  # fmt: skip
        templates=templates,
        business_users=[
            BusinessUserSeed(id="6000000001", name="Ana Alves", email="ana@jaspers-market.example",
                             role="ADMIN", tasks=admin_tasks),
            BusinessUserSeed(id="6000000002", name="Ben Brooks", email="ben@jaspers-market.example",
                             role="ADMIN", tasks=admin_tasks),
            BusinessUserSeed(id="6000000003", name="Eve Evans", email="eve@jaspers-market.example",
                             role="EMPLOYEE", tasks=["ANALYZE", "DRAFT"]),
        ],  # fmt: skip
        system_users=[SystemUserSeed(id="7000000001", name="waguard-automation", role="ADMIN",
                                     created_by="6000000001")],  # fmt: skip
        assigned_users=[
            AssignmentSeed(waba_id=waba, user_id="6000000001", tasks=["MANAGE"]),
            AssignmentSeed(waba_id=waba, user_id="6000000002", tasks=["MANAGE"]),
            AssignmentSeed(waba_id=waba, user_id="6000000003", tasks=["MANAGE_TEMPLATES", "VIEW_COST"]),
            AssignmentSeed(waba_id=waba, user_id="7000000001", tasks=["MANAGE"]),
        ],
        subscribed_apps=[SubscribedAppSeed(waba_id=waba, app_id=app, app_name="Jasper's Market Bot")],
        tokens=[
            TokenSeed(id="tok-system-user-1", value=system_user_token, type="SYSTEM_USER",
                      user_id="7000000001", scopes=[*wa_scopes, "business_management"],
                      granular_scopes=granular, issued_at=issued, expires_at=issued + SIXTY_DAYS_S),
        ],  # fmt: skip
    )
