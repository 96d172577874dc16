"""The simulator's live state: the seeded objects as they change, budgets, faults and the record.

`app.state.sim` is a `SimState`. Tests and drills may read it directly, and call its methods from
another thread: every method that reads or changes several things at once holds `lock`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from waguard.meta.simulator import envelope as E
from waguard.meta.simulator import rules
from waguard.meta.simulator.clock import SimClock
from waguard.meta.simulator.faults import Fault, FaultSpec, activate, take
from waguard.meta.simulator.record import MASK, Masker, RequestLog
from waguard.meta.simulator.seed import (
    AppSeed,
    BusinessSeed,
    BusinessUserSeed,
    GranularScopeSeed,
    PhoneNumberSeed,
    Seed,
    SubscribedAppSeed,
    SystemUserSeed,
    TemplateSeed,
    TokenSeed,
    WabaSeed,
)

Kind = Literal["app", "business", "waba", "phone_number", "template", "business_user", "system_user"]
WHATSAPP_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")
DATA_ACCESS_S = 90 * 86400  # Meta's data-access window, renewed with each new token


class AppToken:
    """An app access token `{app-id}|{app-secret}`: valid while the secret is the current one."""

    id = "app-token"
    type = "APP"
    user_id: str | None = None
    scopes: list[str] = []

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id


class SimState:
    """Everything the simulator knows, seeded from a `Seed` and changed by Graph calls and admin calls."""

    def __init__(self, seed: Seed, clock: Callable[[], float] | None = None) -> None:
        self.clock: Callable[[], float] = clock or SimClock()
        self.settable_clock = isinstance(self.clock, SimClock)
        self.lock = threading.RLock()
        self.log = RequestLog()
        self.epoch = 0  # bumped by every reset: calls still in flight from before it are dropped
        self.reset(seed)

    # ---- loading ---------------------------------------------------------------------------------

    def reset(self, seed: Seed) -> None:
        """Replace the whole state with a fresh copy of `seed` (record, budgets and faults too)."""
        s = seed.model_copy(deep=True)
        with self.lock:
            self.epoch += 1
            self.seed = seed
            self.app: AppSeed = s.app
            self.apps: dict[str, AppSeed] = {a.id: a for a in [s.app, *s.other_apps]}
            self.business = s.business
            self.businesses: dict[str, BusinessSeed] = {b.id: b for b in [s.business, *s.other_businesses]}
            self.limits = s.limits
            self.default_version = s.default_version
            self.wabas: dict[str, WabaSeed] = {w.id: w for w in s.wabas}
            self.numbers: dict[str, PhoneNumberSeed] = {p.id: p for p in s.phone_numbers}
            self.templates: dict[str, TemplateSeed] = {t.id: t for t in s.templates}
            self.business_users: dict[str, BusinessUserSeed] = {u.id: u for u in s.business_users}
            self.system_users: dict[str, SystemUserSeed] = {u.id: u for u in s.system_users}
            self.assignments: dict[str, dict[str, list[str]]] = {w: {} for w in self.wabas}
            for a in s.assigned_users:
                self.assignments[a.waba_id][a.user_id] = list(a.tasks)
            self.subscriptions: dict[str, dict[str, SubscribedAppSeed]] = {w: {} for w in self.wabas}
            for sub in s.subscribed_apps:
                self.subscriptions[sub.waba_id][sub.app_id] = sub
            self.verify_tokens: dict[str, str] = {}  # "waba:app" or "number" -> verify token
            self.tokens: dict[str, TokenSeed] = {}
            for t in s.tokens:
                t.app_id = t.app_id or self.app.id
                self.tokens[t.id] = t
            self.previous_secrets: list[str] = []
            self.registration_attempts: dict[str, list[float]] = {}
            self.app_calls: list[float] = []
            self.waba_calls: dict[str, list[float]] = {}
            self.faults: list[Fault] = []
            self.deleted_templates: list[dict[str, Any]] = []
            self._seq = 0
            self.log.clear()

    def now(self) -> float:
        """The simulator's clock."""
        return self.clock()

    def advance(self, seconds: float) -> None:
        """Advance the built-in clock; an injected clock is the caller's to move."""
        if not isinstance(self.clock, SimClock):
            raise RuntimeError("the simulator was created with an injected clock: advance that clock instead")
        self.clock.advance(seconds)

    def new_id(self, prefix: str) -> str:
        """A fresh simulator-internal id (token ids, fault ids)."""
        self._seq += 1
        return f"{prefix}-{self._seq}"

    # ---- objects ---------------------------------------------------------------------------------

    def kind_of(self, object_id: str) -> Kind | None:
        """Which kind of Graph object an id names, or None if it names nothing."""
        if object_id in self.apps:
            return "app"
        if object_id in self.businesses:
            return "business"
        tables: tuple[tuple[Kind, dict[str, Any]], ...] = (
            ("waba", self.wabas), ("phone_number", self.numbers), ("template", self.templates),
            ("business_user", self.business_users), ("system_user", self.system_users),
        )  # fmt: skip
        for kind, table in tables:
            if object_id in table:
                return kind
        return None

    def waba_of(self, kind: Kind | None, object_id: str) -> str | None:
        """The WABA an object belongs to (for BUC accounting and access checks)."""
        if kind == "waba":
            return object_id
        if kind == "phone_number":
            return self.numbers[object_id].waba_id
        if kind == "template":
            return self.templates[object_id].waba_id
        return None

    def business_of(self, kind: Kind | None, object_id: str) -> BusinessSeed:
        """The business portfolio an object belongs to (the seed's business for apps and unknowns)."""
        if kind == "business":
            return self.businesses[object_id]
        owner = None
        if (waba_id := self.waba_of(kind, object_id)) is not None:
            owner = self.wabas[waba_id].business_id
        elif user := self.business_users.get(object_id) or self.system_users.get(object_id):
            owner = user.business_id
        return self.businesses.get(owner or self.business.id, self.business)

    def user_name(self, user_id: str) -> str:
        """A person's or system user's name ('' if unknown)."""
        user = self.business_users.get(user_id) or self.system_users.get(user_id)
        return user.name if user else ""

    def is_admin(self, user_id: str | None, business_id: str | None = None) -> bool:
        """Whether a user is an admin (person or system user) of a business (default: the user's own)."""
        user = self.business_users.get(user_id or "") or self.system_users.get(user_id or "")
        if user is None or user.role != "ADMIN":
            return False
        return business_id is None or (user.business_id or self.business.id) == business_id

    def is_member(self, user_id: str | None, business_id: str) -> bool:
        """Whether a person or system user belongs to this business."""
        user = self.business_users.get(user_id or "") or self.system_users.get(user_id or "")
        return user is not None and (user.business_id or self.business.id) == business_id

    def can_reach_waba(self, user_id: str | None, waba_id: str) -> bool:
        """Admins of the WABA's business reach it; others only if assigned to it."""
        owner = self.business_of("waba", waba_id).id
        return self.is_admin(user_id, owner) or (user_id or "") in self.assignments.get(waba_id, {})

    # ---- tokens and the app secret ---------------------------------------------------------------

    def find_token(self, value: str) -> TokenSeed | AppToken | None:
        """The token with this value, an app token under the current secret, or None."""
        app_id, sep, secret = value.partition("|")
        if sep:
            app = self.apps.get(app_id)
            ok = app is not None and secrets.compare_digest(secret.encode(), app.secret.encode())
            return AppToken(app_id) if ok else None
        wanted = value.encode()
        matches = (t for t in self.tokens.values() if secrets.compare_digest(t.value.encode(), wanted))
        return next(matches, None)

    def token_problem(self, token: TokenSeed, now: float) -> E.GraphError | None:
        """Why a known token does not work (revoked, expired), or None if it works."""
        if not token.valid:
            return E.token_revoked()
        if token.expires_at and now >= token.expires_at:
            return E.token_expired(time.strftime("%A, %d-%b-%y %H:%M:%S UTC", time.gmtime(token.expires_at)))
        return None

    def revoke_token(self, token_id: str) -> bool:
        """Revoke one token (the Business Settings 'Revoke' button). False if there is no such token."""
        with self.lock:
            token = self.tokens.get(token_id)
            if token is None:
                return False
            token.valid = False
            return True

    def revoke_user_tokens(self, user_id: str) -> int:
        """Invalidate every token a user owns; how many were valid."""
        with self.lock:
            live = [t for t in self.tokens.values() if t.user_id == user_id and t.valid]
            for t in live:
                t.valid = False
            return len(live)

    def issue_token(
        self,
        user_id: str,
        scopes: list[str],
        *,
        token_type: Literal["SYSTEM_USER", "USER"] = "SYSTEM_USER",
        lifetime_s: float | None = None,
        app_id: str | None = None,
    ) -> TokenSeed:
        """A new token for a user; WhatsApp scopes target the WABAs the user can reach."""
        with self.lock:
            now = int(self.now())
            wabas = [w for w in self.wabas if self.can_reach_waba(user_id, w)]
            granular = [GranularScopeSeed(scope=s, target_ids=wabas) for s in scopes if s in WHATSAPP_SCOPES]
            if "business_management" in scopes:
                owner = self.business_of("system_user" if user_id in self.system_users else "business_user",
                                         user_id)
                granular.append(GranularScopeSeed(scope="business_management", target_ids=[owner.id]))
            value = "EAAG" + secrets.token_urlsafe(48).replace("-", "x").replace("_", "y")  # Meta's alphabet
            token = TokenSeed(
                id=self.new_id("tok"), value=value, type=token_type, user_id=user_id,
                app_id=app_id or self.app.id, scopes=list(scopes), granular_scopes=granular, issued_at=now,
                expires_at=int(now + lifetime_s) if lifetime_s else 0,
                data_access_expires_at=int(now + DATA_ACCESS_S),
            )  # fmt: skip
            self.tokens[token.id] = token
            return token

    def app_of(self, token: TokenSeed | AppToken) -> AppSeed:
        """The app a token was issued for (its secret keys the token's appsecret_proof)."""
        return self.apps.get(token.app_id or self.app.id, self.app)

    def reset_app_secret(self, app_id: str | None = None) -> str:
        """The dashboard's 'Reset' of an app's secret (default: the seed's app): the old one stops
        working at once."""
        with self.lock:
            app = self.apps[app_id or self.app.id]
            self.previous_secrets.append(app.secret)
            app.secret = secrets.token_hex(16)
            return app.secret

    def known_secrets(self) -> list[str]:
        """Every secret value the simulator holds, for masking the record."""
        with self.lock:
            found = [*(a.secret for a in self.apps.values()), *self.previous_secrets,
                     *self.verify_tokens.values()]
            found += [t.value for t in self.tokens.values()]
            found += [f"{a}|{s}" for a in self.apps
                      for s in [*(x.secret for x in self.apps.values()), *self.previous_secrets]]
            found += [n.two_step_pin for n in self.numbers.values() if n.two_step_pin]
            return found

    def masker(self) -> Masker:
        """A Masker for the secrets known right now."""
        return Masker(self.known_secrets())

    # ---- budgets ---------------------------------------------------------------------------------

    def count_call(
        self, waba_ids: list[str], now: float, *, count: bool = True
    ) -> tuple[E.GraphError | None, dict[str, str]]:
        """Count one call against the app budget and its WABAs'; the throttle error if one is spent.

        Returns (error or None, usage headers). With `count=False` only the headers are computed
        (calls refused before authentication are nobody's usage). Throttled calls count too: Meta
        keeps counting calls made while throttled. A call on no WABA (business users, debug_token)
        reports every WABA's usage in X-Business-Use-Case-Usage.
        """
        with self.lock:
            hour, lim = rules.HOUR_S, self.limits
            self.app_calls = rules.in_window([*self.app_calls, *([now] if count else [])], now, hour)
            error: E.GraphError | None = None
            regain = 0
            if count and len(self.app_calls) > lim.app_calls_per_hour:
                error = E.app_throttled()
                regain = rules.regain_minutes(self.app_calls, now, lim.app_calls_per_hour, hour)
            entries: dict[str, tuple[int, int]] = {}
            for waba in waba_ids or list(self.wabas):
                added = [now] if count and waba_ids else []
                calls = rules.in_window([*self.waba_calls.get(waba, []), *added], now, hour)
                self.waba_calls[waba] = calls
                waba_regain = regain
                if added and len(calls) > lim.waba_calls_per_hour:
                    waba_regain = max(regain, rules.regain_minutes(calls, now, lim.waba_calls_per_hour, hour))
                    error = error or E.waba_throttled()
                entries[waba] = (rules.percent(len(calls), lim.waba_calls_per_hour), waba_regain)
            app_pct = rules.percent(len(self.app_calls), lim.app_calls_per_hour)
            headers = {
                "x-app-usage": rules.app_usage_header(app_pct),
                "x-business-use-case-usage": rules.buc_header(entries),
            }
            return error, headers

    def saturated_headers(self, waba_ids: list[str], regain_minutes: int) -> dict[str, str]:
        """Usage headers of an injected throttle: every budget at 100 %."""
        entries = {w: (100, regain_minutes) for w in (waba_ids or list(self.wabas))}
        return {
            "x-app-usage": rules.app_usage_header(100),
            "x-business-use-case-usage": rules.buc_header(entries),
        }

    def count_registration(self, number_id: str, now: float) -> int:
        """Record one register/deregister request for a number; the count in the moving window."""
        with self.lock:
            window = self.limits.registration_window_s
            attempts = rules.in_window([*self.registration_attempts.get(number_id, []), now], now, window)
            self.registration_attempts[number_id] = attempts
            return len(attempts)

    # ---- faults ----------------------------------------------------------------------------------

    def add_fault(self, spec: FaultSpec) -> Fault:
        """Activate a fault."""
        with self.lock:
            self._seq += 1
            fault = activate(self._seq, spec, self.now())
            self.faults.append(fault)
            return fault

    def take_fault(self, path: str, unversioned: str, now: float) -> Fault | None:
        """The fault that applies to a call, using up one of its counted calls."""
        with self.lock:
            return take(self.faults, path, unversioned, now)

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self.lock:
            self.faults.clear()

    # ---- the admin view --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON, with every secret value masked."""
        with self.lock:
            now = self.now()
            tokens = [self.token_view(t, now) for t in self.tokens.values()]
            numbers = []
            for n in self.numbers.values():
                row = n.model_dump()
                row["two_step_pin"] = MASK if n.two_step_pin else None
                attempts = self.registration_attempts.get(n.id, [])
                window = self.limits.registration_window_s
                row["registration_attempts_in_window"] = len(rules.in_window(attempts, now, window))
                numbers.append(row)
            return {
                "now": now,
                "settable_clock": self.settable_clock,
                "app": {**self.app.model_dump(), "secret": MASK,
                        "previous_secrets": len(self.previous_secrets)},
                "business": self.business.model_dump(),
                "other_businesses": [b.model_dump() for b in self.businesses.values()
                                     if b is not self.business],
                "wabas": [w.model_dump() for w in self.wabas.values()],
                "phone_numbers": numbers,
                "templates": [t.model_dump() for t in self.templates.values()],
                "deleted_templates": list(self.deleted_templates),
                "business_users": [u.model_dump() for u in self.business_users.values()],
                "system_users": [u.model_dump() for u in self.system_users.values()],
                "assigned_users": [{"waba_id": w, "user_id": u, "tasks": t}
                                   for w, users in self.assignments.items() for u, t in users.items()],
                "subscribed_apps": [s.model_dump() for subs in self.subscriptions.values()
                                    for s in subs.values()],
                "tokens": tokens,
                "limits": self.limits.model_dump(),
                "usage": {"app_calls_in_hour": len(rules.in_window(self.app_calls, now, rules.HOUR_S)),
                          "waba_calls_in_hour": {w: len(rules.in_window(c, now, rules.HOUR_S))
                                                 for w, c in self.waba_calls.items()}},
                "faults": [f.model_dump() for f in self.faults if not f.spent(now)],
                "requests_recorded": len(self.log.entries),
            }  # fmt: skip

    def token_view(self, token: TokenSeed, now: float) -> dict[str, Any]:
        """A token described without its value."""
        problem = self.token_problem(token, now)
        return {
            "id": token.id, "type": token.type, "user_id": token.user_id, "app_id": token.app_id,
            "scopes": token.scopes, "issued_at": token.issued_at, "expires_at": token.expires_at,
            "revoked": not token.valid, "is_valid": problem is None,
        }  # fmt: skip
