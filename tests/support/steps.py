"""Containment steps tested one by one: real Meta simulator, real OpenBao, no playbook around them.

`StepWorld` holds Settings pointing at the simulator and at this test's Vault paths (the seed's token
and app secret written there), an incident record, and builds `Ports`/`Effects` for a step:

    world = await step_world(meta_sim, vault, vault_prefix, tmp_path)
    async with world.ports() as ports:
        report = await deregister_numbers(ports, world.effects(), [meta_sim.number_id])

`ThenChange` is a Graph transport that lets the world change right after one call was answered, the
way another actor (or Meta's eventual consistency) can undo a change between a step's action and its
read-back. It forwards every request to the real simulator over HTTP; it changes no answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.fixtures.meta import MetaSim
from tests.fixtures.vault import OpenBao
from waguard.meta.client import GraphClient
from waguard.playbook.effects import Effects
from waguard.playbook.ports import Ports, graph_from_vault
from waguard.playbook.timeline import IncidentRecord
from waguard.settings import IntakeSettings, MetaSettings, Settings
from waguard.vault.client import VaultClient


class ThenChange(httpx.AsyncBaseTransport):
    """Forward to the simulator; after the first answered `method` call whose path ends with `suffix`,
    run `change` once (against the simulator's live state)."""

    def __init__(self, method: str, suffix: str, change: Callable[[], None]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.method, self.suffix, self.change = method, suffix, change
        self.fired = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not self.fired and request.method == self.method and request.url.path.endswith(self.suffix):
            await response.aread()
            self.fired = True
            self.change()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class StepWorld:
    meta_sim: MetaSim
    vault: VaultClient
    settings: Settings
    incident: IncidentRecord

    def effects(self, *, plan: bool = False) -> Effects:
        return Effects(plan, self.incident, self.settings.meta.graph_version)

    @contextlib.asynccontextmanager
    async def ports(self, transport: httpx.AsyncBaseTransport | None = None) -> AsyncIterator[Ports]:
        """Ports whose Graph client is keyed from Vault, as a playbook run's are (no Slack)."""
        graph: GraphClient = await graph_from_vault(self.settings, self.vault)
        if transport is not None:  # the same client, its requests through `transport`
            graph = self.meta_sim.client(token=(await self.vault.read_secret(self.settings.meta.token_path)).value,
                                         app_secret=self.meta_sim.app_secret, transport=transport)
        ports = Ports(self.settings, self.vault, graph, None)  # type: ignore[arg-type]  # steps use no Slack
        try:
            yield ports
        finally:
            await ports.graph.aclose()

    def done_targets(self, step: str) -> list[str]:
        """Targets the incident timeline records as done by `step` (what Effects wrote)."""
        return [e.target or "" for e in self.incident.events() if e.step == step and e.outcome == "done"]


async def step_world(meta_sim: MetaSim, openbao: OpenBao, vault: VaultClient, vault_prefix: str,
                     tmp_path: Path, incident_id: str = "INC-steps") -> StepWorld:
    """Settings on the simulator and this test's Vault paths, holding the seed's token and app secret."""
    settings = Settings(
        meta=MetaSettings(graph_url=meta_sim.url, token_path=f"{vault_prefix}/meta/token",
                          app_secret_path=f"{vault_prefix}/meta/app-secret", ledger_path=tmp_path / "ledger",
                          retry_budget_s=0),
        intake=IntakeSettings(public_url="http://127.0.0.1:8730", state_dir=tmp_path / "intake",
                              rotation_window_path=f"{vault_prefix}/rotation-window"),
        vault=openbao.settings, incidents_dir=tmp_path / "incidents")
    await vault.write_secret(settings.meta.token_path, meta_sim.token)
    await vault.write_secret(settings.meta.app_secret_path, meta_sim.app_secret)
    return StepWorld(meta_sim, vault, settings, IncidentRecord(tmp_path / "incidents", incident_id))
