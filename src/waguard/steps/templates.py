"""Message templates: find the offending ones, delete by hsm_id + name, verify gone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from waguard.meta import wire
from waguard.meta.client import GraphClient
from waguard.meta.errors import MetaError, MetaNotFound
from waguard.meta.models import Template
from waguard.playbook.effects import Effects
from waguard.playbook.ports import Ports
from waguard.steps.report import StepReport, VerificationFailed


async def find_templates(graph: GraphClient, waba_id: str, *, names: Iterable[str] = (),
                         statuses: Iterable[str] = (), reasons: Iterable[str] = (),
                         since: int | None = None) -> list[Template]:
    """The offending templates: every filter given must match."""
    found = await graph.list_templates(waba_id, status=list(statuses) or None, since=since)
    names, reasons = set(names), set(reasons)
    return [t for t in found if (not names or t.name in names)
            and (not reasons or (t.rejected_reason or "") in reasons)]


async def delete_templates(
    ports: Ports, fx: Effects, waba_id: str, templates: Sequence[Template]
) -> StepReport:
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
