"""The posture audit: read the business (concurrently, within Meta's limits) and list findings.

`read_posture` only reads; `findings` is a pure function of what was read, the policy and the time,
so each rule is unit-tested without a server. A finding names ids and ages, never a secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from waguard.meta.models import TokenInfo
from waguard.playbook.hygiene_policy import HygienePolicy
from waguard.playbook.ports import Ports
from waguard.steps.business import is_our_callback
from waguard.steps.rotation import DAY_S, written_at, written_due

Severity = Literal["critical", "high", "medium", "low"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low")
ROLE_RANK = {"ADMIN": 3, "FINANCE_EDITOR": 2, "DEVELOPER": 2, "EMPLOYEE": 1, "FINANCE_ANALYST": 1}
# Every finding kind and its severity: the Prometheus gauges carry these closed sets as labels.
KINDS: dict[str, Severity] = {
    "unknown_admin": "critical",        # an ADMIN nobody named: how takeovers start
    "role_escalated": "critical",       # a known person holding a higher role than allowed
    "unknown_user": "high",
    "unknown_system_user": "high",
    "unknown_app": "high",
    "foreign_override": "high",         # a webhook override that is not our intake
    "token_past_age": "high",
    "token_foreign_scope": "high",      # scoped to a WABA outside the inventory
    "token_invalid": "high",            # a token consumers read that Meta refuses
    "template_foreign_link": "high",    # a newly approved template linking outside the allow-list
    "display_name_changed": "medium",
    "token_never_expires": "medium",
    "pin_past_age": "medium",
    "app_secret_past_age": "medium",
}
URL = re.compile(r"https?://[^\s\"'<>]+", re.IGNORECASE)
READ_CONCURRENCY = 16  # Graph calls in flight at once: well inside Meta's per-app and BUC budgets


@dataclass(frozen=True)
class Finding:
    kind: str
    target: str
    detail: str

    @property
    def severity(self) -> Severity:
        return KINDS[self.kind]


@dataclass
class PostureReads:
    """What the audit read (no secret: tokens are described by debug_token, not held)."""

    business_users: list[dict[str, Any]] = field(default_factory=list)  # id, name, role, access_since
    system_users: list[str] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)  # waba_id, app_id, override
    numbers: list[dict[str, Any]] = field(default_factory=list)  # id, verified_name, override
    new_templates: list[dict[str, Any]] = field(default_factory=list)  # id, name, language, urls
    tokens: dict[str, TokenInfo] = field(default_factory=dict)  # Vault path -> debug_token
    pin_written_at: float | None = None
    app_secret_written_at: float | None = None
    calls: int = 0


# ---- pure rules ----------------------------------------------------------------------------------------


def _days(seconds: float) -> str:
    return f"{seconds / DAY_S:.0f} d"


def user_findings(users: Iterable[dict[str, Any]], policy: HygienePolicy, now: float) -> list[Finding]:
    out = []
    known = policy.inventory.business_users
    for u in users:
        since = u.get("access_since")
        held = f"; access for {_days(now - since)}" if since else "; access since before the log"
        role = u.get("role") or "EMPLOYEE"
        who = f"{u['id']} ({u.get('name') or '?'}, {role})"
        if u["id"] not in known:
            out.append(Finding("unknown_admin" if role == "ADMIN" else "unknown_user", u["id"], who + held))
        elif ROLE_RANK.get(role, 3) > ROLE_RANK[known[u["id"]].role]:
            out.append(Finding("role_escalated", u["id"], f"{who}, allowed {known[u['id']].role}{held}"))
    return out


def token_findings(tokens: dict[str, TokenInfo], policy: HygienePolicy, now: float) -> list[Finding]:
    out = []
    wabas = set(policy.inventory.wabas)
    for path, info in tokens.items():
        if not info.is_valid:
            out.append(Finding("token_invalid", path, "debug_token: is_valid=false"))
            continue
        if not info.expires_at:
            out.append(
                Finding("token_never_expires", path, f"issued {_days(now - (info.issued_at or 0))} ago")
            )
        age = now - (info.issued_at or 0)
        if age >= policy.tokens.max_age_days * DAY_S:
            out.append(
                Finding("token_past_age", path, f"{_days(age)} old (max {policy.tokens.max_age_days} d)")
            )
        foreign = sorted({t for g in info.granular_scopes if g.scope.startswith("whatsapp")
                          for t in g.target_ids} - wabas)
        if foreign:
            out.append(Finding("token_foreign_scope", path, f"scoped to WABAs {foreign}"))
    return out


def link_allowed(url: str, domains: Sequence[str]) -> bool:
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in (d.lower() for d in domains))


def template_urls(components: Iterable[dict[str, Any]]) -> list[str]:
    """Every URL a template's components carry (button URLs, links in texts)."""
    found: list[str] = []
    for c in components:
        for b in c.get("buttons") or []:
            if b.get("url"):
                found.append(str(b["url"]))
        for key in ("text", "example"):
            if isinstance(c.get(key), str):
                found += URL.findall(c[key])
    return found


def findings(reads: PostureReads, policy: HygienePolicy, intake_url: str, now: float) -> list[Finding]:
    """Every finding, sorted by severity then kind and target."""
    inv = policy.inventory
    out = user_findings(reads.business_users, policy, now)
    out += [Finding("unknown_system_user", s, "system user not in the inventory")
            for s in reads.system_users if s not in inv.system_users]
    for sub in reads.subscriptions:
        if sub.get("app_id") and sub["app_id"] not in inv.apps:
            out.append(Finding("unknown_app", sub["app_id"], f"subscribed to WABA {sub['waba_id']}"))
        if sub.get("override") and not is_our_callback(sub["override"], intake_url):
            out.append(Finding("foreign_override", f"waba:{sub['waba_id']}", f"override {sub['override']}"))
    for n in reads.numbers:
        if n.get("override") and not is_our_callback(n["override"], intake_url):
            out.append(Finding("foreign_override", f"number:{n['id']}", f"override {n['override']}"))
        expected = inv.display_names.get(n["id"])
        if expected is not None and n.get("verified_name") != expected:
            out.append(
                Finding("display_name_changed", n["id"], f"{n.get('verified_name')!r}, expected {expected!r}")
            )
    out += token_findings(reads.tokens, policy, now)
    for t in reads.new_templates:
        bad = [u for u in t["urls"] if not link_allowed(u, policy.allowed_link_domains)]
        if bad:
            out.append(
                Finding("template_foreign_link", t["id"], f"{t['name']}/{t['language']} links to {bad}")
            )
    if (why := written_due(reads.pin_written_at, now, policy.pin)) is not None:
        out += [Finding("pin_past_age", n["id"], f"PIN at {policy.pin_path}: {why}") for n in reads.numbers]
    if (why := written_due(reads.app_secret_written_at, now, policy.app_secret)) is not None:
        out.append(Finding("app_secret_past_age", "app-secret", why))
    return sorted(set(out), key=lambda f: (SEVERITIES.index(f.severity), f.kind, f.target))


def digest(found: Iterable[Finding]) -> str:
    """Identity of a set of findings (kind and target only), to tell when they change."""
    keys = sorted({(f.kind, f.target) for f in found})
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]


def counts(found: Iterable[Finding]) -> dict[tuple[str, str], int]:
    """(kind, severity) -> how many; every kind present, zero included (gauges that drop to 0)."""
    out: dict[tuple[str, str], int] = {(k, s): 0 for k, s in KINDS.items()}
    for f in found:
        out[(f.kind, f.severity)] += 1
    return out


def markdown(found: Sequence[Finding], when: datetime, business_id: str) -> str:
    head = (
        f"# Posture audit of business {business_id}\n\n{when:%Y-%m-%d %H:%M} UTC: {len(found)} finding(s).\n"
    )
    if not found:
        return (
            head
            + "\nNothing found: only named admins, known users, apps and overrides; credentials within age.\n"
        )
    rows = "\n".join(
        f"| {f.severity} | {f.kind} | `{f.target}` | {f.detail.replace('|', '/')} |" for f in found
    )
    return head + "\n| severity | kind | target | detail |\n|---|---|---|---|\n" + rows + "\n"


def as_dicts(found: Iterable[Finding]) -> list[dict[str, str]]:
    return [{**asdict(f), "severity": f.severity} for f in found]


# ---- reading ---------------------------------------------------------------------------------------------

T = TypeVar("T")


def _unix(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()


async def read_posture(ports: Ports, policy: HygienePolicy, now: float) -> PostureReads:
    """Everything the rules need, read concurrently (at most READ_CONCURRENCY Graph calls at once)."""
    graph, meta, vault = ports.graph, ports.settings.meta, ports.vault
    gate = asyncio.Semaphore(READ_CONCURRENCY)
    reads = PostureReads()

    async def limited(call: Awaitable[T]) -> T:
        async with gate:
            reads.calls += 1
            return await call

    async def access_since(user_id: str) -> float | None:
        logs = await limited(graph.business_user_setting_logs(user_id))
        times = [t for t in (_unix(e.event_time) for e in logs) if t is not None]
        return min(times) if times else None

    async def token(path: str) -> tuple[str, TokenInfo]:
        value = (await vault.read_secret(path)).value
        return path, await limited(graph.debug_token(value))

    users, system_users, subs, numbers, templates, tokens = await asyncio.gather(
        limited(graph.list_business_users(meta.business_id)),
        limited(graph.list_system_users(meta.business_id)),
        asyncio.gather(*(limited(graph.list_subscribed_apps(w)) for w in policy.inventory.wabas)),
        limited(
            graph.list_phone_numbers(meta.waba_id, fields=("id", "verified_name", "webhook_configuration"))
        ),
        limited(
            graph.list_templates(
                meta.waba_id, status=["APPROVED"], since=int(now - policy.template_window_s), limit=100
            )
        ),
        asyncio.gather(*(token(t.path) for t in policy.managed_tokens)),
    )
    since = await asyncio.gather(*(access_since(u.id) for u in users))
    reads.business_users = [{"id": u.id, "name": u.name, "role": u.role, "access_since": s}
                            for u, s in zip(users, since, strict=True)]
    reads.system_users = [s.id for s in system_users]
    reads.subscriptions = [{"waba_id": w, "app_id": a.app_id, "override": a.override_callback_uri}
                           for w, apps in zip(policy.inventory.wabas, subs, strict=True) for a in apps]
    reads.numbers = [
        {
            "id": n.id,
            "verified_name": n.verified_name,
            "override": ((n.model_extra or {}).get("webhook_configuration") or {}).get("phone_number"),
        }
        for n in numbers
    ]
    reads.new_templates = [{"id": t.id, "name": t.name, "language": t.language,
                            "urls": template_urls(t.components or [])} for t in templates]
    reads.tokens = dict(tokens)
    reads.pin_written_at, reads.app_secret_written_at = await asyncio.gather(
        written_at(ports, policy.pin_path), written_at(ports, meta.app_secret_path))
    return reads


def user_ids(
    found: Iterable[Finding], kinds: Sequence[str] = ("unknown_admin", "role_escalated")
) -> list[str]:
    return sorted({f.target for f in found if f.kind in kinds})


# ---- publishing ----------------------------------------------------------------------------------------

LATEST_FILE = "posture-audit.json"


def write_latest(state_dir: Path, found: Sequence[Finding], now: float, digest_: str) -> Path:
    """The latest audit result beside the intake's state, which exports it as gauges (atomic replace)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LATEST_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"at": now, "digest": digest_, "findings": as_dicts(found)}, indent=1))
    tmp.replace(path)
    return path


def slack_summary(found: Sequence[Finding], first: bool) -> str:
    if not found:
        return "*Posture audit*: no findings" + (
            "." if first else " any more: the earlier ones are resolved."
        )
    lines = [f"• *{f.severity}* {f.kind} `{f.target}`: {f.detail}" for f in found[:20]]
    more = f"\n…and {len(found) - 20} more (see the run's artifact)." if len(found) > 20 else ""
    return (
        f"*Posture audit*: {len(found)} finding(s){'' if first else ' (changed since the last audit)'}:\n"
        + "\n".join(lines)
        + more
    )
