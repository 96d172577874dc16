"""What Meta's webhooks show, as Prometheus counters the rules in detection/rules read.

The metric names and labels are the ones listed in detection/metrics.md (a test keeps both in step).
Only verified, first-seen deliveries are counted (the intake calls `observe` after the replay check), so
Meta's retries and a replayed body do not inflate a rate.

Labels are ids and closed sets: WABA, phone-number and template ids (digits), Meta's enum values, with
anything unknown counted as `other` (Meta edits its enums often) and logged once. The one name is the
template's (`[a-z0-9_]`), which the template-abuse playbook needs to delete it. Each metric holds at most
`max_series` label sets; beyond that, new ids are folded into `other` so a flood of made-up ids cannot
grow the exposition without bound.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from waguard.intake.detect import MetaChange, MetaDelivery

log = logging.getLogger("waguard.intake")

OTHER = "other"
_DIGITS = re.compile(r"[0-9]{1,32}")
_TEMPLATE_NAME = re.compile(r"[a-z0-9_]{1,512}")
_ERROR_CODE = re.compile(r"[0-9]{1,8}")

STATUSES = frozenset({"sent", "delivered", "read", "failed"})
PRICING_CATEGORIES = frozenset(
    {"authentication", "authentication_international", "marketing", "marketing_lite", "utility", "service"}
)
TEMPLATE_EVENTS = frozenset(
    {
        "APPROVED",
        "REJECTED",
        "PENDING",
        "FLAGGED",
        "PAUSED",
        "DISABLED",
        "LOCKED",
        "REINSTATED",
        "PENDING_DELETION",
        "DELETED",
        "ARCHIVED",
        "IN_APPEAL",
        "LIMIT_EXCEEDED",
    }
)
QUALITY_SCORES = frozenset({"GREEN", "YELLOW", "RED", "UNKNOWN"})
TEMPLATE_CATEGORIES = frozenset({"AUTHENTICATION", "MARKETING", "UTILITY"})
ACCOUNT_UPDATE_EVENTS = frozenset(
    {
        "PARTNER_APP_INSTALLED",
        "PARTNER_APP_UNINSTALLED",
        "PARTNER_ADDED",
        "PARTNER_REMOVED",
        "ACCOUNT_VIOLATION",
        "ACCOUNT_RESTRICTION",
        "DISABLED_UPDATE",
        "ACCOUNT_DELETED",
        "ACCOUNT_OFFBOARDED",
        "ACCOUNT_RECONNECTED",
        "AD_ACCOUNT_LINKED",
        "MM_LITE_TERMS_SIGNED",
        "BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE",
        "PARTNER_CLIENT_CERTIFICATION_STATUS_UPDATE",
        "AUTH_INTL_PRICE_ELIGIBILITY_UPDATE",
        "VOLUME_BASED_PRICING_TIER_UPDATE",
    }
)
SECURITY_EVENTS = frozenset({"PIN_CHANGED", "PIN_RESET_REQUEST", "PIN_REQUEST_SUCCESS"})
ALERT_ENTITY_TYPES = frozenset({"BUSINESS", "PHONE_NUMBER", "CURRENT_STATUS_ID"})
ALERT_TYPES = frozenset(
    {
        "PROFILE_PICTURE_LOST",
        "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED",
        "INCREASED_CAPABILITIES_ELIGIBILITY_FAILED",
        "INCREASED_CAPABILITIES_ELIGIBILITY_NEED_MORE_INFO",
        "OBA_APPROVED",
        "OBA_REJECTED",
    }
)
NAME_DECISIONS = frozenset({"APPROVED", "DEFERRED", "PENDING", "REJECTED"})


def graph_id(value: Any) -> str:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return text if _DIGITS.fullmatch(text) else OTHER


class MetaSignals:
    """The `waguard_meta_*` counters and `waguard_known_waba_info`, on the intake's registry."""

    def __init__(
        self, registry: CollectorRegistry, known_wabas: Iterable[str] = (), max_series: int = 20_000
    ) -> None:
        self.max_series = max_series
        self._series: dict[int, dict[tuple[str, ...], Any]] = {}  # metric -> labels -> child
        self._unknown_logged: set[tuple[str, str]] = set()

        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.statuses = counter(
            "waguard_meta_statuses",
            "Message statuses by number, status and error code.",
            ["waba_id", "phone_number_id", "status", "error_code"],
        )
        self.sent_pricing = counter(
            "waguard_meta_sent_pricing",
            "Sent messages by pricing category.",
            ["waba_id", "phone_number_id", "category"],
        )
        self.template_status = counter(
            "waguard_meta_template_status_updates",
            "Template status updates.",
            ["waba_id", "template_id", "template", "event"],
        )
        self.template_quality = counter(
            "waguard_meta_template_quality_updates", "Template quality updates.", ["waba_id", "new_quality"]
        )
        self.template_category = counter(
            "waguard_meta_template_category_updates",
            "Template category updates.",
            ["waba_id", "new_category"],
        )
        self.account_updates = counter(
            "waguard_meta_account_updates", "account_update events.", ["waba_id", "event"]
        )
        self.security = counter(
            "waguard_meta_security_events", "security events (two-step PIN).", ["waba_id", "event"]
        )
        self.account_alerts = counter(
            "waguard_meta_account_alerts",
            "account_alerts by entity and type.",
            ["waba_id", "entity_type", "alert_type"],
        )
        self.name_updates = counter(
            "waguard_meta_phone_number_name_updates", "Display-name reviews.", ["waba_id", "decision"]
        )
        self.capability = counter(
            "waguard_meta_business_capability_updates", "business_capability_update.", ["waba_id"]
        )
        self.known = Gauge(
            "waguard_known_waba_info", "The WABAs waguard protects (1 each).", ["waba_id"], registry=registry
        )
        for waba in known_wabas:
            self.known.labels(waba).set(1)

    # -- counting ------------------------------------------------------------------------------------

    def _enum(self, field: str, value: Any, allowed: frozenset[str]) -> str:
        if isinstance(value, str) and value in allowed:
            return value
        key = (field, str(value)[:64])
        if len(self._unknown_logged) < 1000 and key not in self._unknown_logged:
            self._unknown_logged.add(key)
            log.info(
                "intake: Meta %s value %r is not a known one; counted as %r",
                field,
                re.sub(r"[^A-Za-z0-9_.-]", "?", key[1]),
                OTHER,
            )
        return OTHER

    def _inc(self, metric: Counter, ids: tuple[str, ...], rest: tuple[str, ...] = ()) -> None:
        """Increment one series; past `max_series` label sets, new ids are counted as `other`."""
        children = self._series.setdefault(id(metric), {})
        labels = (*ids, *rest)
        child = children.get(labels)
        if child is None:  # labels() costs a few us: each series' child is looked up once
            if len(children) >= self.max_series:
                labels = (*(OTHER for _ in ids), *rest)
                child = children.get(labels)
            if child is None:
                child = children[labels] = metric.labels(*labels)
        child.inc()

    def observe(self, delivery: MetaDelivery) -> None:
        """Count every change of a verified, first-seen delivery."""
        for entry in delivery.entry:
            waba = graph_id(entry.id)
            if waba == OTHER:
                continue
            for change in entry.changes:
                self._change(waba, change)

    def _change(self, waba: str, change: MetaChange) -> None:
        field, value = change.field, change.value
        # Route on the shape too: a revision of Meta's quality sample is labelled as a status update.
        if (
            field == "message_template_status_update"
            and "new_quality_score" in value
            and "event" not in value
        ):
            field = "message_template_quality_update"
        if field == "messages":
            self._statuses(waba, value)
        elif field == "message_template_status_update":
            name = value.get("message_template_name")
            template = name if isinstance(name, str) and _TEMPLATE_NAME.fullmatch(name) else OTHER
            self._inc(
                self.template_status,
                (waba, graph_id(value.get("message_template_id")), template),
                (self._enum(field, value.get("event"), TEMPLATE_EVENTS),),
            )
        elif field == "message_template_quality_update":
            self._inc(
                self.template_quality,
                (waba,),
                (self._enum(field, value.get("new_quality_score"), QUALITY_SCORES),),
            )
        elif field == "template_category_update":
            self._inc(
                self.template_category,
                (waba,),
                (self._enum(field, value.get("new_category"), TEMPLATE_CATEGORIES),),
            )
        elif field == "account_update":
            self._inc(
                self.account_updates, (waba,), (self._enum(field, value.get("event"), ACCOUNT_UPDATE_EVENTS),)
            )
        elif field == "security":
            self._inc(self.security, (waba,), (self._enum(field, value.get("event"), SECURITY_EVENTS),))
        elif field == "account_alerts":
            raw = value.get("alert_info")
            info: dict[str, Any] = raw if isinstance(raw, dict) else {}
            self._inc(
                self.account_alerts,
                (waba,),
                (
                    self._enum(field, value.get("entity_type"), ALERT_ENTITY_TYPES),
                    self._enum(field, info.get("alert_type"), ALERT_TYPES),
                ),
            )
        elif field == "phone_number_name_update":
            self._inc(self.name_updates, (waba,), (self._enum(field, value.get("decision"), NAME_DECISIONS),))
        elif field == "business_capability_update":
            self._inc(self.capability, (waba,))

    def _statuses(self, waba: str, value: dict[str, Any]) -> None:
        raw = value.get("metadata")
        metadata: dict[str, Any] = raw if isinstance(raw, dict) else {}
        number = graph_id(metadata.get("phone_number_id"))
        statuses = value.get("statuses")
        for status in statuses if isinstance(statuses, list) else []:
            if not isinstance(status, dict):
                continue
            state = self._enum("statuses.status", status.get("status"), STATUSES)
            code = ""
            errors = status.get("errors")
            if state == "failed" and isinstance(errors, list) and errors and isinstance(errors[0], dict):
                raw = str(errors[0].get("code", ""))
                code = raw if _ERROR_CODE.fullmatch(raw) else OTHER
            self._inc(self.statuses, (waba, number), (state, code))
            pricing = status.get("pricing")
            if state == "sent" and isinstance(pricing, dict) and "category" in pricing:
                self._inc(
                    self.sent_pricing,
                    (waba, number),
                    (self._enum("pricing.category", pricing.get("category"), PRICING_CATEGORIES),),
                )
