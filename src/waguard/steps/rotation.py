"""Scheduled credential rotation: system-user tokens with a grace window, the two-step PIN, and the
app secret's dashboard step when it is due.

Decisions are pure functions of what was read and the time (`token_due`, `written_due`,
`due_revocations`), so the grace window is tested with an injected clock. A replaced token is
recorded as a pending revocation (Vault path and version, never the value) before the run waits out
the grace window; a run that dies meanwhile leaves it for the next run to revoke.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, SecretStr

from waguard.meta import wire
from waguard.meta.client import GraphClient
from waguard.meta.errors import MetaError
from waguard.meta.models import TokenInfo
from waguard.playbook.effects import Effects
from waguard.playbook.hygiene_policy import Ages, ManagedToken
from waguard.playbook.ports import Ports
from waguard.state.backends import open_ledger
from waguard.steps.report import StepReport, VerificationFailed
from waguard.steps.tokens import metadata_or_none

DAY_S = 86400
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


# ---- pure decisions ---------------------------------------------------------------------------------


def token_due(info: TokenInfo, now: float, ages: Ages) -> str | None:
    """Why a token must be rotated now, or None. Ages come from debug_token's own times."""
    if not info.is_valid:
        return "invalid per debug_token"
    if not info.expires_at:
        return "never expires"
    issued = info.issued_at or 0
    age_days = (now - issued) / DAY_S
    if age_days >= ages.rotate_after_days:
        return f"{age_days:.0f} days old (rotate at {ages.rotate_after_days})"
    if info.expires_at - now <= ages.expiry_margin_days * DAY_S:
        return f"expires in {(info.expires_at - now) / DAY_S:.1f} days"
    return None


def written_due(written_at: float | None, now: float, ages: Ages) -> str | None:
    """Why a credential known only by when it was written (PIN, app secret) must change, or None."""
    if written_at is None:
        return "not in Vault"
    age_days = (now - written_at) / DAY_S
    if age_days >= ages.rotate_after_days:
        return f"{age_days:.0f} days old (rotate at {ages.rotate_after_days})"
    return None


class PendingRevocation(BaseModel):
    """A replaced token still valid for the grace window: named by its Vault version, never its value."""

    path: str
    version: int
    system_user_id: str
    not_before: float  # unix seconds: revoke at or after this


def due_revocations(pending: Sequence[PendingRevocation], now: float) -> list[PendingRevocation]:
    """The pending revocations whose grace window has ended."""
    return [p for p in pending if now >= p.not_before]


async def wait_until(deadline: float, clock: Clock, sleep: Sleep, step_s: float = 5.0) -> None:
    """Sleep until `clock()` reaches `deadline` (an injected clock and sleep make this instant in tests)."""
    while (left := deadline - clock()) > 0:
        await sleep(min(left, step_s))


# ---- tokens -----------------------------------------------------------------------------------------


@dataclass
class TokenRotation:
    report: StepReport
    pending: PendingRevocation | None = None


async def graph_with_token(ports: Ports, token: SecretStr) -> GraphClient:
    """A client acting with `token` (the app secret from Vault): what a consumer reading Vault gets."""
    secret = (await ports.vault.read_secret(ports.settings.meta.app_secret_path)).value
    return GraphClient.from_settings(ports.settings.meta, token=token, app_secret=secret,
                                     ledger=open_ledger(ports.settings))


async def rotate_token(ports: Ports, fx: Effects, managed: ManagedToken, ages: Ages, grace_s: int,
                       now: float) -> TokenRotation:
    """Issue a new 60-day token when the current one is due; old one stays valid for `grace_s`.

    Done when the new version in Vault is valid per debug_token and reads the WABA.
    """
    report = StepReport(step="rotate-token")
    meta = await ports.vault.read_metadata(managed.path)
    current = await ports.vault.read_secret(managed.path)
    info = await ports.graph.debug_token(current.value)
    reason = token_due(info, now, ages)
    if reason is None:
        report.already.append(managed.path)
        report.verified = True
        return TokenRotation(report)
    issued: list[SecretStr] = []

    async def issue() -> None:
        new = await ports.graph.generate_system_user_token(
            managed.system_user_id, app_id=ports.settings.meta.app_id, scopes=managed.scopes)
        issued.append(new)
        await ports.vault.write_secret(managed.path, new, cas=meta.current_version)

    req = wire.generate_system_user_token(managed.system_user_id, app_id=ports.settings.meta.app_id,
                                          scopes=managed.scopes)
    if not await fx.graph(report.step, managed.path, req, issue):
        return TokenRotation(report)  # plan mode
    report.acted.append(f"{managed.path}: {reason}")
    fresh = issued[0]
    new_info = await ports.graph.debug_token(fresh)
    if not new_info.is_valid or not new_info.expires_at:
        raise VerificationFailed(f"the new token at {managed.path} is not a valid expiring token")
    client = await graph_with_token(ports, fresh)
    try:
        await client.list_phone_numbers(ports.settings.meta.waba_id)
    finally:
        await client.aclose()
    report.verified = True
    pending = None
    if info.is_valid:  # a dead token needs no revocation
        pending = PendingRevocation(path=managed.path, version=current.version,
                                    system_user_id=managed.system_user_id, not_before=now + grace_s)
    return TokenRotation(report, pending)


async def revoke_replaced(ports: Ports, fx: Effects, pending: PendingRevocation) -> StepReport:
    """Revoke one replaced token (read from its Vault version), done when debug_token says invalid."""
    report = StepReport(step="revoke-replaced-token")
    target = f"{pending.path} v{pending.version}"
    old = (await ports.vault.read_secret(pending.path, version=pending.version)).value
    if not (await ports.graph.debug_token(old)).is_valid:
        report.already.append(target)
    elif await fx.graph(report.step, target, wire.revoke_system_user_token(pending.system_user_id, old),
                        lambda: ports.graph.revoke_system_user_token(pending.system_user_id, old)):
        report.acted.append(target)
    if not fx.plan:
        if (await ports.graph.debug_token(old)).is_valid:
            raise VerificationFailed(f"debug_token still says the replaced token {target} is valid")
        current = (await ports.vault.read_secret(pending.path)).value
        if not (await ports.graph.debug_token(current)).is_valid:
            raise VerificationFailed(f"revoking {target} took the current token at {pending.path} with it")
        report.verified = True
    return report


# ---- the two-step PIN and the app secret -------------------------------------------------------------


async def written_at(ports: Ports, path: str) -> float | None:
    """When the current version at `path` was written (None: never)."""
    meta = await metadata_or_none(ports, path)
    if meta is None:
        return None
    return meta.versions[meta.current_version].created_time.timestamp()


async def rotate_pin(ports: Ports, fx: Effects, pin_path: str, ages: Ages, now: float) -> StepReport:
    """A new two-step PIN when the current one is due: Vault first, then every number of the WABA."""
    report = StepReport(step="rotate-two-step-pin")
    reason = written_due(await written_at(ports, pin_path), now, ages)
    if reason is None:
        report.already.append(pin_path)
        report.verified = True
        return report
    numbers = [n.id for n in await ports.graph.list_phone_numbers(ports.settings.meta.waba_id)]
    pin = SecretStr(f"{secrets.randbelow(10**6):06d}")
    await fx.other(
        report.step, pin_path, f"vault kv put {pin_path}", lambda: ports.vault.write_secret(pin_path, pin)
    )

    async def one(pn: str) -> None:
        if await fx.graph(
            report.step, pn, wire.set_two_step_pin(pn, pin), lambda: ports.graph.set_two_step_pin(pn, pin)
        ):
            report.acted.append(pn)

    await asyncio.gather(*(one(pn) for pn in numbers))
    report.verified = not fx.plan  # Meta cannot read a PIN back: accepted by every number is the proof
    return report


async def app_secret_due(ports: Ports, ages: Ages, now: float) -> str | None:
    """Why the app secret needs its dashboard reset now (by its Vault version's age), or None."""
    return written_due(await written_at(ports, ports.settings.meta.app_secret_path), now, ages)


def started_before(now: float) -> datetime:
    from datetime import UTC

    return datetime.fromtimestamp(now, UTC)


async def token_works(client: GraphClient, waba_id: str) -> bool:
    try:
        await client.list_phone_numbers(waba_id)
        return True
    except MetaError:
        return False
