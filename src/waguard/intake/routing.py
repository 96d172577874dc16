"""Routing policy (`runbooks/routing.yaml`): which alert starts which playbook with which parameters.

Responders edit the YAML; it is validated at start into these models (`extra="forbid"`, parameters
checked against the playbooks' parameter models, every playbook named must have a loadable policy).
The decisions are pure functions: a parsed, verified delivery and the policy in, a `Route` out.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from waguard.intake.params import MANAGED, PARAMETER_MODELS, settable, worst
from waguard.playbook.policy import PLAYBOOKS, Playbook, Severity, load_policy, load_yaml_model

ROUTING_FILE = "routing.yaml"
Leaked = Literal["app_secret", "token", "both"]
_DUMMY = {"incident_id": "x", "severity": "SEV3", "initiator": "x", "source": "x"}
_NAME = re.compile(r"[^A-Za-z0-9_]+")


# --- the policy file ---------------------------------------------------------------------------


class AlertPlaybookRoute(BaseModel):
    """How alerts that name one playbook fill its parameters."""

    model_config = {"extra": "forbid"}

    labels: dict[str, str] = Field(default_factory=dict, description="Flow parameter <- alert label name.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Fixed flow parameter values.")
    severity: Severity | None = Field(None, description="Fixed severity; else from the severity label.")


class AlertRouting(BaseModel):
    """Alertmanager and Grafana: firing alerts whose label names a playbook start it."""

    model_config = {"extra": "forbid"}

    playbook_label: str = Field("playbook", description="Label whose value names the playbook to start.")
    severity_label: str = Field("severity", description="Label mapped to a severity by `severities`.")
    severities: dict[str, Severity] = Field(
        default_factory=lambda: dict[str, Severity]({"critical": "SEV1", "warning": "SEV2", "info": "SEV3"}))
    default_severity: Severity = "SEV2"
    quiet_period_s: int = Field(86400, ge=60, description="An incident with no delivery this long is over.")
    playbooks: dict[Playbook, AlertPlaybookRoute] = Field(
        default_factory=dict, description="The playbooks alerts may start; others are recorded only.")

    @model_validator(mode="after")
    def _parameters_exist(self) -> AlertRouting:
        for playbook, route in self.playbooks.items():
            allowed = settable(playbook)
            for name in [*route.labels, *route.parameters]:
                if name in MANAGED:
                    raise ValueError(f"{playbook}: {name} is set by the intake, not by routing")
                if name not in allowed:
                    raise ValueError(f"{playbook}: no parameter {name!r} (has {sorted(allowed)})")
            try:
                PARAMETER_MODELS[playbook].model_validate({**_DUMMY, **route.parameters})
            except ValidationError as err:
                raise ValueError(f"{playbook}: invalid parameters: {err.errors()[0]['msg']}") from None
        return self


class GrafanaRouting(AlertRouting):
    """Grafana adds its HMAC headers; configure the same names on the contact point."""

    signature_header: str = Field("X-Grafana-Alerting-Signature", min_length=1)
    timestamp_header: str = Field("X-Grafana-Alerting-Timestamp", min_length=1)


class GitHubRouting(BaseModel):
    """GitHub secret-scanning alerts start the leaked-secret playbook."""

    model_config = {"extra": "forbid"}

    playbook: Literal["leaked_secret"] = "leaked_secret"
    start_actions: list[str] = Field(default_factory=lambda: ["created", "reopened", "publicly_leaked"])
    close_actions: list[str] = Field(default_factory=lambda: ["resolved"])
    severity: Severity = "SEV1"
    meta_secret_types: dict[str, Leaked] = Field(
        default_factory=dict, description="Meta secret types -> what leaked, used when the value is absent.")
    when_value_absent: Literal["start", "record"] = Field(
        "record", description="GitHub's webhook carries no secret value: start on type alone, or record.")
    quiet_period_s: int = Field(30 * 86400, ge=60)


class TemplateAbuseDetection(BaseModel):
    model_config = {"extra": "forbid"}

    statuses: list[str] = Field(default_factory=lambda: ["FLAGGED", "PAUSED", "DISABLED"])
    rejected_reasons: list[str] = Field(default_factory=lambda: ["SCAM", "ABUSIVE_CONTENT"])
    severity: Severity = "SEV2"


class AccountTakeoverDetection(BaseModel):
    model_config = {"extra": "forbid"}

    account_update_events: list[str] = Field(
        default_factory=lambda: ["PARTNER_ADDED", "PARTNER_APP_INSTALLED"])
    security_events: list[str] = Field(default_factory=lambda: ["PIN_CHANGED", "PIN_RESET_REQUEST"])
    severity: Severity = "SEV1"


class MetaRouting(BaseModel):
    """Meta webhooks: which events mean template abuse or account takeover (null: detection off)."""

    model_config = {"extra": "forbid"}

    template_abuse: TemplateAbuseDetection | None = Field(default_factory=TemplateAbuseDetection)
    account_takeover: AccountTakeoverDetection | None = Field(default_factory=AccountTakeoverDetection)
    quiet_period_s: int = Field(86400, ge=60)


class RoutingPolicy(BaseModel):
    """The whole routing file."""

    model_config = {"extra": "forbid"}

    version: Literal[1]
    alertmanager: AlertRouting = Field(default_factory=AlertRouting)
    grafana: GrafanaRouting = Field(default_factory=GrafanaRouting)
    github: GitHubRouting = Field(default_factory=GitHubRouting)
    meta: MetaRouting = Field(default_factory=MetaRouting)

    def playbooks(self) -> set[Playbook]:
        """Every playbook this policy can start."""
        named: set[Playbook] = {*self.alertmanager.playbooks, *self.grafana.playbooks, self.github.playbook}
        if self.meta.template_abuse:
            named.add("template_abuse")
        if self.meta.account_takeover:
            named.add("account_takeover")
        return named


def load_routing(path: Path, runbooks_dir: Path | None = None) -> RoutingPolicy:
    """Read and validate the routing policy; with `runbooks_dir`, also every playbook policy it needs.

    Raises:
        ConfigError: naming the file and every invalid key.
    """
    policy = load_yaml_model(path, RoutingPolicy, "routing policy")
    if runbooks_dir is not None:
        for playbook in sorted(policy.playbooks()):
            load_policy(runbooks_dir, playbook)  # raises ConfigError naming the policy file
    return policy


# --- decisions (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Start (or join) the run of `playbook` for incident `key`."""

    playbook: Playbook
    key: str
    severity: Severity
    source: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """What a delivery asks for: runs to start, incidents its source says are over, and notes."""

    starts: tuple[Start, ...] = ()
    closes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class AmAlert(BaseModel):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""
    endsAt: str = ""
    fingerprint: str = ""


class AlertNotification(BaseModel):
    """Alertmanager webhook v4, or Grafana's v1 (Alertmanager's fields plus orgId and a few more)."""

    version: str
    groupKey: str = Field(min_length=1, max_length=8192)
    status: Literal["firing", "resolved"]
    receiver: str = ""
    alerts: list[AmAlert] = Field(max_length=10_000)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    orgId: int | None = None


def playbook_named(value: str | None) -> Playbook | None:
    """The playbook a label value names ("leaked_secret" or "leaked-secret"), else None."""
    name = (value or "").strip().lower().replace("-", "_")
    return name if name in PLAYBOOKS else None


def alert_key(source: str, note: AlertNotification) -> str:
    """Incident key of an alert group: readable alert name plus a hash of Alertmanager's groupKey."""
    name = note.groupLabels.get("alertname") or note.commonLabels.get("alertname") or "group"
    name = _NAME.sub("_", name)[:40]
    digest = hashlib.sha256(note.groupKey.encode()).hexdigest()[:16]
    org = f"{note.orgId}:" if note.orgId is not None else ""
    return f"{source}:{org}{name}:{digest}"


def alert_route(source: str, note: AlertNotification, cfg: AlertRouting) -> Route:
    """Route an Alertmanager or Grafana notification: firing alerts naming a playbook start it."""
    key = alert_key(source, note)
    if note.status == "resolved":
        return Route(closes=(key,), notes=("the group resolved; recorded, not acted on",))
    by_playbook: dict[Playbook, list[AmAlert]] = {}
    notes: list[str] = []
    for alert in note.alerts:
        if alert.status != "firing":
            continue
        label = alert.labels.get(cfg.playbook_label)
        playbook = playbook_named(label)
        if label is None:
            continue
        if playbook is None or playbook not in cfg.playbooks:
            notes.append(f"an alert names a playbook this source may not start ({cfg.playbook_label} label)")
            continue
        by_playbook.setdefault(playbook, []).append(alert)
    if not by_playbook and not notes:
        notes.append(f"no firing alert carries the {cfg.playbook_label} label")
    starts = []
    name = key.split(":")[-2]
    for playbook, alerts in sorted(by_playbook.items()):
        route = cfg.playbooks[playbook]
        params = _from_labels(playbook, route, alerts)
        labelled = [cfg.severities[a.labels[cfg.severity_label]] for a in alerts
                    if a.labels.get(cfg.severity_label) in cfg.severities]
        severity = route.severity or worst(labelled, cfg.default_severity)
        if not _valid(playbook, params):
            notes.append(f"alert labels give invalid parameters for {playbook}; not started")
            continue
        starts.append(Start(playbook, key, severity, f"{source}:{name}", params))
    return Route(starts=tuple(starts), notes=tuple(notes))


VALIDITY_KEPT = 4096  # parameter sets whose validity is remembered (cleared whole when full)
_validity: dict[tuple[Playbook, tuple[tuple[str, type, Any], ...]], bool] = {}


def _valid(playbook: Playbook, params: dict[str, Any]) -> bool:
    """Whether `params` pass the playbook's parameter model. The answer depends on the values only, and
    an alert group repeats the same few label sets, so it is remembered per (playbook, parameters)."""
    try:
        key = (playbook, tuple(sorted((k, type(v), tuple(v) if isinstance(v, list) else v)  # 1 is not True
                                      for k, v in params.items())))
        known = _validity.get(key)
    except TypeError:  # a value that cannot be a key (a dict from the policy): validated each time
        key, known = None, None
    if known is not None:
        return known
    try:
        PARAMETER_MODELS[playbook].model_validate({**_DUMMY, **params})
        valid = True
    except ValidationError:
        valid = False
    if key is not None:
        if len(_validity) >= VALIDITY_KEPT:
            _validity.clear()
        _validity[key] = valid
    return valid


@functools.cache
def _settable(playbook: Playbook) -> dict[str, bool]:
    return settable(playbook)  # read off the parameter model, which never changes: once per playbook


def _from_labels(playbook: Playbook, route: AlertPlaybookRoute, alerts: list[AmAlert]) -> dict[str, Any]:
    lists = _settable(playbook)
    params: dict[str, Any] = {}
    for param, label in route.labels.items():
        values = [a.labels[label] for a in alerts if a.labels.get(label)]
        if not values:
            continue
        params[param] = sorted(set(values)) if lists[param] else values[0]
    return {**params, **route.parameters}


class GitHubAlert(BaseModel):
    number: int = Field(ge=1)
    secret_type: str = ""
    secret: str | None = Field(None, repr=False)  # absent from GitHub's webhook; present in API reads


class GitHubRepository(BaseModel):
    id: int
    full_name: str = ""


class SecretScanningDelivery(BaseModel):
    action: str = Field(min_length=1, max_length=64)
    alert: GitHubAlert
    repository: GitHubRepository


@dataclass(frozen=True)
class CredentialMatch:
    """Which managed Meta credential a leaked value is (by keyed hash), and its Vault path."""

    leaked: Leaked
    vault_path: str
    waba_id: str | None = None  # the WABA whose business the credential belongs to (the run's WABA)


def github_key(d: SecretScanningDelivery) -> str:
    return f"github:{d.repository.id}:{d.alert.number}"


def github_route(d: SecretScanningDelivery, cfg: GitHubRouting, match: CredentialMatch | None) -> Route:
    """Route a secret_scanning_alert delivery.

    Args:
        d: the parsed delivery.
        cfg: the GitHub routing policy.
        match: the managed credential the leaked value matched, None if it matched none or was absent.
    """
    key = github_key(d)
    source = f"github:secret_scanning_alert:{d.alert.number}"
    action = _NAME.sub("", d.action)[:40]  # notes reach the audit log: keep them plain words
    if d.action in cfg.close_actions:
        return Route(closes=(key,), notes=(f"alert {action}; recorded",))
    if d.action not in cfg.start_actions:
        return Route(notes=(f"action {action} is recorded, not acted on",))
    if d.alert.secret is not None:
        if match is None:
            return Route(notes=("the leaked value is not a credential waguard manages",))
        params: dict[str, Any] = {"leaked": match.leaked,
                                  "leaked_token_path": match.vault_path if match.leaked == "token" else None}
        return Route(starts=(Start(cfg.playbook, key, cfg.severity, source, params),))
    leaked = cfg.meta_secret_types.get(d.alert.secret_type)
    if leaked is None or cfg.when_value_absent == "record":
        return Route(notes=("no secret value in the delivery to compare; recorded",))
    return Route(starts=(Start(cfg.playbook, key, cfg.severity, source, {"leaked": leaked}),))
