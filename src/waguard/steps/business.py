"""The Business Manager: remove users who are not named admins; reset foreign webhook overrides."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from waguard.meta import wire
from waguard.playbook.effects import Effects
from waguard.playbook.ports import Ports
from waguard.steps.report import StepReport, VerificationFailed


async def remove_unknown_users(ports: Ports, fx: Effects, business_id: str, waba_id: str,
                               keep: Sequence[str]) -> StepReport:
    """Remove every business user and WABA assignee not on the named-admin list."""
    report = StepReport(step="remove-unknown-users")
    graph, keep_set = ports.graph, set(keep)
    users, assigned, system_users = await asyncio.gather(
        graph.list_business_users(business_id), graph.list_assigned_users(waba_id, business_id),
        graph.list_system_users(business_id))
    system = {u.id for u in system_users}
    # Our own system users are not on the admin list but must stay assigned; they are handled by the
    # token rotation instead (Meta has no API to delete a system user).
    strangers = [u.id for u in users if u.id not in keep_set]
    unassign = [u.id for u in assigned if u.id not in keep_set and u.id not in system]

    async def unassign_one(uid: str) -> None:
        if await fx.graph(report.step, f"waba:{waba_id}/user:{uid}", wire.remove_assigned_user(waba_id, uid),
                          lambda: graph.remove_assigned_user(waba_id, uid)):
            report.acted.append(f"assignment:{uid}")

    async def remove_one(uid: str) -> None:
        if await fx.graph(
            report.step, uid, wire.remove_business_user(uid), lambda: graph.remove_business_user(uid)
        ):
            report.acted.append(f"user:{uid}")

    # Independent calls run together; assignments go first so a removed user holds nothing meanwhile.
    await asyncio.gather(*(unassign_one(uid) for uid in unassign))
    await asyncio.gather(*(remove_one(uid) for uid in strangers))
    if not strangers and not unassign:
        report.already.append(business_id)
    if not fx.plan:
        left = [u.id for u in await graph.list_business_users(business_id) if u.id not in keep_set]
        left += [u.id for u in await graph.list_assigned_users(waba_id, business_id)
                 if u.id not in keep_set and u.id not in system]
        if left:
            raise VerificationFailed(f"users other than the named admins remain: {sorted(set(left))}")
        report.verified = True
    return report


def _endpoint(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) of an http(s) URL, or None if it is not one we could trust."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:  # a port out of range (":87301") or a malformed host
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.username is not None \
            or parts.password is not None or port is None:
        return None
    return parts.scheme.lower(), parts.hostname.lower().rstrip("."), port, parts.path


def is_our_callback(uri: str, ours: str) -> bool:
    """Whether a webhook override points at our intake: same scheme, host and port, and a path at or
    below the intake's own path. Parsed, never compared as text: `https://intake.example.com.evil.net`
    and `http://127.0.0.1:87301` both start with an intake URL and are foreign."""
    theirs, mine = _endpoint(uri), _endpoint(ours)
    if theirs is None or mine is None or theirs[:3] != mine[:3]:
        return False
    base = mine[3].rstrip("/")
    return theirs[3] == base or theirs[3].startswith(base + "/")


def foreign_overrides(uris: Iterable[str | None], ours: str) -> list[str]:
    """The overrides that do not point at our intake (no override at all is not foreign)."""
    return [u for u in uris if u and not is_our_callback(u, ours)]


async def reset_overrides(ports: Ports, fx: Effects, waba_id: str, ours: str) -> StepReport:
    """Webhook overrides pointing anywhere but our intake are removed (unsubscribe, resubscribe)."""
    report = StepReport(step="reset-webhook-overrides")
    graph = ports.graph
    apps = await graph.list_subscribed_apps(waba_id)
    foreign = foreign_overrides((a.override_callback_uri for a in apps), ours)
    if not foreign:
        report.already.append(waba_id)
    else:
        if await fx.graph(
            report.step, waba_id, wire.unsubscribe_app(waba_id), lambda: graph.unsubscribe_app(waba_id)
        ):
            report.acted.append(f"unsubscribed:{waba_id}")
        if await fx.graph(
            report.step, waba_id, wire.subscribe_app(waba_id), lambda: graph.subscribe_app(waba_id)
        ):
            report.acted.append(f"resubscribed:{waba_id}")
    if not fx.plan:
        after = await graph.list_subscribed_apps(waba_id)
        if not after or foreign_overrides((a.override_callback_uri for a in after), ours):
            raise VerificationFailed(f"WABA {waba_id} still has a foreign override or no subscription")
        report.verified = True
    return report
