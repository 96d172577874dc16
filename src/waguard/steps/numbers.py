"""Phone numbers: deregister (suspend) within Meta's registration budget, new two-step PINs.

Each step reads the target first, acts through `Effects`, then reads back.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from datetime import datetime

from pydantic import SecretStr

from waguard.meta import wire
from waguard.playbook.effects import Effects
from waguard.playbook.ports import Ports
from waguard.steps.report import StepReport, VerificationFailed
from waguard.steps.tokens import metadata_or_none

# A deregistered Cloud API number reports platform_type NOT_APPLICABLE (reference §1); Meta has no
# "suspended" status, so that is what "suspended" means here.
UNREGISTERED = {"NOT_APPLICABLE"}


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
    meta = await metadata_or_none(ports, pin_path)
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
