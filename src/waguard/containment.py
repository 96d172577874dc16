"""Containment steps, shared by the playbooks.

Each step reads the target's current state first, acts only where needed (through `Effects`, so plan
mode records instead of acting), then verifies by reading back from the target. A re-run therefore
resumes: a number already deregistered, a template already gone or a token already dead is recorded
as `already` and not touched again. Independent calls run concurrently, within Meta's limits.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr

from waguard.errors import WaguardError
from waguard.meta import wire
from waguard.meta.client import GraphClient
from waguard.meta.errors import MetaError, MetaNotFound
from waguard.meta.models import Template
from waguard.runtime import Effects, Ports

# A deregistered Cloud API number reports platform_type NOT_APPLICABLE (reference §1); Meta has no
# "suspended" status, so that is what "suspended" means here.
UNREGISTERED = {"NOT_APPLICABLE"}


class StepReport(BaseModel):
    """What a step did: ids and outcomes only, never a secret value."""

    step: str
    acted: list[str] = Field(default_factory=list)     # targets changed by this run
    already: list[str] = Field(default_factory=list)   # targets found already in the wanted state
    failed: dict[str, str] = Field(default_factory=dict)
    verified: bool = False

    @property
    def summary(self) -> str:
        parts = [f"{len(self.acted)} changed", f"{len(self.already)} already done"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return ", ".join(parts) + ("; verified" if self.verified else "; NOT verified")


class VerificationFailed(WaguardError):
    """Read-back shows the target is not in the state the step promised."""


# --- phone numbers ------------------------------------------------------------------------------


async def deregister_numbers(ports: Ports, fx: Effects, numbers: Sequence[str]) -> StepReport:
    report = StepReport(step="deregister-numbers")
    graph = ports.graph

    async def one(pn: str) -> None:
        current = await graph.get_phone_number(pn)
        if current.platform_type in UNREGISTERED:
            report.already.append(pn)
            return
        if await fx.graph(report.step, pn, wire.deregister_phone_number(pn),
                          lambda: graph.deregister_phone_number(pn)):
            report.acted.append(pn)

    await asyncio.gather(*(one(pn) for pn in numbers))
    if not fx.plan:
        after = await asyncio.gather(*(graph.get_phone_number(pn) for pn in numbers))
        still = [n.id for n in after if n.platform_type not in UNREGISTERED]
        if still:
            raise VerificationFailed(f"numbers still registered after deregistration: {still}")
        report.verified = True
    return report


async def set_new_pin(ports: Ports, fx: Effects, numbers: Sequence[str], pin_path: str,
                      started_at: datetime) -> StepReport:
    """A new two-step PIN, written to Vault before it is applied (so it is never lost).

    Meta cannot read a PIN back; verification is that Vault holds a version written during this
    incident and that Meta accepted it for every number.
    """
    report = StepReport(step="new-two-step-pin")
    meta = await _metadata_or_none(ports, pin_path)
    if meta is not None and meta.updated_time >= started_at:
        pin = (await ports.vault.read_secret(pin_path)).value  # this incident's PIN: re-apply, idempotent
    else:
        pin = SecretStr(f"{secrets.randbelow(10**6):06d}")
        await fx.other(report.step, pin_path, f"vault kv put secret/{pin_path}",
                       lambda: ports.vault.write_secret(pin_path, pin))
    async def one(pn: str) -> None:
        if await fx.graph(report.step, pn, wire.set_two_step_pin(pn, pin),
                          lambda: ports.graph.set_two_step_pin(pn, pin)):
            report.acted.append(pn)

    await asyncio.gather(*(one(pn) for pn in numbers))
    report.verified = not fx.plan
    return report


# --- templates ----------------------------------------------------------------------------------


async def find_templates(graph: GraphClient, waba_id: str, *, names: Iterable[str] = (),
                         statuses: Iterable[str] = (), reasons: Iterable[str] = (),
                         since: int | None = None) -> list[Template]:
    """The offending templates: every filter given must match."""
    found = await graph.list_templates(waba_id, status=list(statuses) or None, since=since)
    names, reasons = set(names), set(reasons)
    return [t for t in found if (not names or t.name in names)
            and (not reasons or (t.rejected_reason or "") in reasons)]


async def delete_templates(ports: Ports, fx: Effects, waba_id: str, templates: Sequence[Template]) -> StepReport:
    report = StepReport(step="delete-templates")
    graph = ports.graph

    async def one(t: Template) -> None:
        try:
            await graph.get_template(t.id)
        except MetaNotFound:
            report.already.append(t.id)
            return
        if t.status == "DISABLED":
            # Meta refuses to delete DISABLED templates; they cannot be sent either.
            report.failed[t.id] = "DISABLED templates cannot be deleted (Meta rule); already unusable"
            return
        try:
            if await fx.graph(report.step, t.id, wire.delete_template(waba_id, t.id, t.name or ""),
                              lambda: graph.delete_template(waba_id, t.id, t.name or "")):
                report.acted.append(t.id)
        except MetaError as err:
            report.failed[t.id] = f"Meta error {err.code}"

    await asyncio.gather(*(one(t) for t in templates))
    if not fx.plan:
        remaining = {t.id for t in await graph.list_templates(waba_id)}
        back = [tid for tid in report.acted + report.already if tid in remaining]
        if back:
            raise VerificationFailed(f"templates still present after deletion: {back}")
        report.verified = True
    return report


# --- tokens -------------------------------------------------------------------------------------


async def revoke_token(ports: Ports, fx: Effects, token_path: str, system_user_id: str) -> StepReport:
    """Revoke a system user's tokens; done when debug_token says the leaked one is invalid."""
    report = StepReport(step="revoke-token")
    leaked = (await ports.vault.read_secret(token_path)).value
    if not (await ports.graph.debug_token(leaked)).is_valid:
        report.already.append(token_path)
    elif await fx.graph(report.step, system_user_id, wire.revoke_system_user_tokens(system_user_id),
                        lambda: ports.graph.revoke_system_user_tokens(system_user_id)):
        report.acted.append(token_path)
    if not fx.plan:
        if (await ports.graph.debug_token(leaked)).is_valid:
            raise VerificationFailed(f"debug_token still says the token at {token_path} is valid")
        report.verified = True
    return report


async def issue_token(ports: Ports, fx: Effects, token_path: str, system_user_id: str,
                      scopes: Sequence[str], started_at: datetime) -> StepReport:
    """A new token for the system user, written to Vault as a new version; done when it works."""
    report = StepReport(step="issue-token")
    meta = await _metadata_or_none(ports, token_path)
    current = (await ports.vault.read_secret(token_path)).value if meta else None
    if meta and meta.updated_time >= started_at and current and (await ports.graph.debug_token(current)).is_valid:
        report.already.append(token_path)
    else:
        async def issue() -> None:
            new = await ports.graph.generate_system_user_token(
                system_user_id, app_id=ports.settings.meta.app_id, scopes=scopes)
            await ports.vault.write_secret(token_path, new)

        req = wire.generate_system_user_token(system_user_id, app_id=ports.settings.meta.app_id, scopes=scopes)
        if await fx.graph(report.step, system_user_id, req, issue):
            report.acted.append(token_path)
    if not fx.plan:
        fresh = (await ports.vault.read_secret(token_path)).value
        if not (await ports.graph.debug_token(fresh)).is_valid:
            raise VerificationFailed(f"the new token at {token_path} is not valid per debug_token")
        report.verified = True
    return report


# --- Business Manager access ----------------------------------------------------------------------


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
        if await fx.graph(report.step, uid, wire.remove_business_user(uid), lambda: graph.remove_business_user(uid)):
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
        if await fx.graph(report.step, waba_id, wire.unsubscribe_app(waba_id), lambda: graph.unsubscribe_app(waba_id)):
            report.acted.append(f"unsubscribed:{waba_id}")
        if await fx.graph(report.step, waba_id, wire.subscribe_app(waba_id), lambda: graph.subscribe_app(waba_id)):
            report.acted.append(f"resubscribed:{waba_id}")
    if not fx.plan:
        after = await graph.list_subscribed_apps(waba_id)
        if not after or foreign_overrides((a.override_callback_uri for a in after), ours):
            raise VerificationFailed(f"WABA {waba_id} still has a foreign override or no subscription")
        report.verified = True
    return report


async def _metadata_or_none(ports: Ports, path: str):  # type: ignore[no-untyped-def]
    from waguard.vault.errors import VaultSecretNotFound

    try:
        return await ports.vault.read_metadata(path)
    except VaultSecretNotFound:
        return None
