"""Per-source steps of the receiver pipeline: how each source is verified, then interpreted.

`verify` gets the raw delivery and answers with a verification label or raises `Rejected`; only
then does `interpret` parse the body and return the delivery's nonce (what makes a replay a replay,
always taken from authenticated bytes, never from an unsigned header), its routing decision and the
source's quiet period. Parsing problems raise `Problem` (a 4xx).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from waguard.errors import WaguardError
from waguard.intake.businesses import Businesses
from waguard.intake.detect import MetaDelivery, detect
from waguard.intake.keys import Candidate, SecretCache
from waguard.intake.routing import (
    AlertNotification,
    Route,
    RoutingPolicy,
    SecretScanningDelivery,
    alert_route,
    github_route,
)
from waguard.intake.verify import verify_bearer, verify_grafana, verify_hub_signature
from waguard.settings import Settings

_GITHUB_DELIVERY = re.compile(r"[A-Za-z0-9-]{1,64}")
_TIMESTAMP = re.compile(r"[0-9T:.+Z-]{10,40}")
GITHUB_EVENTS = ("secret_scanning_alert", "ping")
BODY_NONCES = frozenset({"alertmanager", "grafana", "meta"})  # whose nonce is the body's hash


class Problem(WaguardError):
    """A delivery the service refuses with a clear 4xx (or 503) JSON answer."""

    def __init__(self, status: int, code: str, message: str, outcome: str) -> None:
        super().__init__(message)
        self.status, self.code, self.outcome = status, code, outcome


@dataclass
class Inbound:
    """One delivery as received: raw bytes, their hash, headers; filled in as the pipeline goes."""

    source: str
    body: bytes
    headers: dict[str, str]
    sha256: str = ""
    delivery_id: str | None = None
    verification: str = "not-checked"
    app_id: str | None = None  # a Meta delivery: the app whose secret its signature matched

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class Interpreted:
    nonce: str
    route: Route
    quiet_s: float
    meta: MetaDelivery | None = None  # a Meta delivery, counted as signals once it is known to be new


def model(cls: type[BaseModel], payload: Any) -> Any:
    """Validate a parsed payload; a mismatch is a 422 naming the fields, never their values."""
    try:
        return cls.model_validate(payload)
    except ValidationError as err:
        # Top-level field names only: deeper locations can be keys the sender chose (alert labels).
        where = sorted({str(e["loc"][0]) if e["loc"] and e["loc"][0] in cls.model_fields else "(body)"
                        for e in err.errors()})[:5]
        raise Problem(422, "invalid_payload", "the payload does not match the expected shape at: "
                      + ", ".join(where), "rejected-input") from None


def github_event_nonce(parsed: SecretScanningDelivery, payload: Any, body_sha256: str) -> str:
    """What makes a secret-scanning delivery a new event, from signed bytes only.

    X-GitHub-Delivery is not signed, so a captured body re-sent under a fresh id must not count as
    new. The event is the alert (repository, number), what happened to it (`action`) and when
    (`alert.updated_at`, which GitHub moves on every change); without `updated_at` (nullable in
    GitHub's schema), the signed body itself.
    """
    updated = payload["alert"].get("updated_at")
    when = updated if isinstance(updated, str) and _TIMESTAMP.fullmatch(updated) else body_sha256
    digest = hashlib.sha256(f"{parsed.action}\0{when}".encode()).hexdigest()[:32]
    return f"alert:{parsed.repository.id}:{parsed.alert.number}:{digest}"


@dataclass
class Sources:
    """Verification and interpretation for each alert source."""

    settings: Settings
    routing: RoutingPolicy
    secrets: SecretCache
    clock: Callable[[], float]
    businesses: Businesses | None = None  # None: the settings' registry, read now

    def __post_init__(self) -> None:
        if self.businesses is None:
            self.businesses = Businesses.load(self.settings)
        self._verifiers = {"alertmanager": self.verify_alertmanager, "github": self.verify_github,
                           "grafana": self.verify_grafana, "meta": self.verify_meta}
        self._interpreters = {"alertmanager": self.interpret_alertmanager, "github": self.interpret_github,
                              "grafana": self.interpret_grafana, "meta": self.interpret_meta}

    @property
    def registry(self) -> Businesses:
        assert self.businesses is not None  # set by __post_init__
        return self.businesses

    def verifier(self, source: str) -> Callable[[Inbound], Awaitable[str]]:
        return self._verifiers[source]

    def interpreter(self, source: str) -> Callable[[Inbound, Any], Awaitable[Interpreted]]:
        return self._interpreters[source]

    # -- verification -------------------------------------------------------------------------------

    async def verify_alertmanager(self, d: Inbound) -> str:
        tokens = await self.secrets.values(self.settings.intake.alertmanager_token_path)
        verify_bearer(tokens, d.headers.get("authorization"))
        return "ok"

    async def verify_github(self, d: Inbound) -> str:
        keys = await self.secrets.values(self.settings.intake.github_secret_path)
        verify_hub_signature(keys, d.body, d.headers.get("x-hub-signature-256"))
        return "ok"

    async def verify_grafana(self, d: Inbound) -> str:
        cfg = self.routing.grafana
        keys = await self.secrets.values(self.settings.intake.grafana_secret_path)
        verify_grafana(keys, d.body, d.headers.get(cfg.signature_header.lower()),
                       d.headers.get(cfg.timestamp_header.lower()), now=self.clock())
        return "ok"

    async def verify_meta(self, d: Inbound) -> str:
        # Every registered app's secrets, checked all (constant time, no early exit): which one signed
        # says which app the delivery is for; the WABAs it names are checked against it once parsed.
        apps = self.registry.apps
        if len(apps) == 1:  # the usual case: one cached read, no task for gather to schedule
            found = [await self.secrets.app_secrets_at(apps[0].secret_path, apps[0].window_path)]
        else:
            found = await asyncio.gather(*(self.secrets.app_secrets_at(a.secret_path, a.window_path)
                                           for a in apps))
        keys = [value for values in found for value in values]
        owners = [(app.app_id, n) for app, values in zip(apps, found, strict=True)
                  for n in range(len(values))]
        index = verify_hub_signature(keys, d.body, d.headers.get("x-hub-signature-256"))
        d.app_id, which = owners[index]
        # The previous secret still verifies inside the rotation window; say so in the audit.
        return "ok" if which == 0 else "ok:previous-secret"

    # -- interpretation -----------------------------------------------------------------------------

    async def interpret_alertmanager(self, d: Inbound, payload: Any) -> Interpreted:
        note = self._alert_notification(payload, "4")
        cfg = self.routing.alertmanager
        route = self.registry.alert_route(alert_route("alertmanager", note, cfg), note, cfg)
        # No delivery id, no signature: the body hash is the nonce (an HA pair or a retry sends the
        # same bytes); the bearer token authenticates the sender, not the bytes.
        return Interpreted(d.sha256, route, cfg.quiet_period_s)

    async def interpret_grafana(self, d: Inbound, payload: Any) -> Interpreted:
        note = self._alert_notification(payload, "1")
        cfg = self.routing.grafana
        route = self.registry.alert_route(alert_route("grafana", note, cfg), note, cfg)
        # The body hash, without the signed timestamp: Grafana re-signs a retry with a new one, and
        # the same notification sent again is the same event (inside the window, a replay too).
        return Interpreted(d.sha256, route, cfg.quiet_period_s)

    async def interpret_github(self, d: Inbound, payload: Any) -> Interpreted:
        event = d.headers.get("x-github-event")
        delivery = d.headers.get("x-github-delivery")
        if event not in GITHUB_EVENTS:
            raise Problem(400, "unsupported_event", "X-GitHub-Event must be secret_scanning_alert (or ping)",
                          "rejected-input")
        if not delivery or not _GITHUB_DELIVERY.fullmatch(delivery):
            raise Problem(400, "missing_delivery_id", "X-GitHub-Delivery is missing or malformed",
                          "rejected-input")
        d.delivery_id = delivery  # audited, never a replay key: the signature does not cover it
        if event == "ping":
            return Interpreted(d.sha256, Route(notes=("ping",)), 60)
        parsed: SecretScanningDelivery = model(SecretScanningDelivery, payload)
        match = None
        if parsed.alert.secret is not None:
            match = await self.secrets.match_credential(parsed.alert.secret, await self._credentials())
        cfg = self.routing.github
        route = self.registry.github_route(github_route(parsed, cfg, match), match.waba_id if match else None)
        return Interpreted(github_event_nonce(parsed, payload, d.sha256), route, cfg.quiet_period_s)

    async def _credentials(self) -> list[Candidate]:
        """Each registered app's secret (current, and the previous one in its window) and waguard's token
        there; a match names the business's first WABA as the run's."""
        found: list[Candidate] = []
        for app in self.registry.apps:
            found.append(Candidate("app_secret", app.secret_path,
                                   await self.secrets.app_secrets_at(app.secret_path, app.window_path),
                                   app.first_waba))
            found.append(Candidate("token", app.token_path, await self.secrets.values(app.token_path),
                                   app.first_waba))
        return found

    async def interpret_meta(self, d: Inbound, payload: Any) -> Interpreted:
        if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
            raise Problem(400, "unsupported_event", "object must be whatsapp_business_account",
                          "rejected-input")
        parsed: MetaDelivery = model(MetaDelivery, payload)
        cfg = self.routing.meta
        assert d.app_id is not None  # verify_meta found the app whose secret signed it
        route = self.registry.meta_route(detect(parsed, cfg), parsed, d.app_id)  # Rejected: another app's
        # Meta sends no delivery id and retries for 7 days: the body hash is the nonce.
        return Interpreted(d.sha256, route, cfg.quiet_period_s, meta=parsed)

    @staticmethod
    def _alert_notification(payload: Any, version: str) -> AlertNotification:
        if not isinstance(payload, dict) or payload.get("version") != version:
            raise Problem(400, "unsupported_event", f"only webhook payload version {version} is understood",
                          "rejected-input")
        return model(AlertNotification, payload)
