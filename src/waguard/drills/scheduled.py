"""Drill support for the scheduled deployments: start one as its schedule would, run a consumer that
reads its token from Vault throughout, and check the end state independently.

Used by the scenarios with a `start` (runbooks/drills/token-past-90-days.yaml, stale-admin-drift.yaml).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from waguard.meta.client import GraphClient
from waguard.meta.errors import MetaError
from waguard.settings import Settings
from waguard.steps.rotation import DAY_S
from waguard.vault.client import VaultClient


async def start_deployment(deployment: str, parameters: dict[str, Any]) -> Any:
    """Create a run of `<deployment>/<deployment>` now, as its schedule would; returns the flow run."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        dep = await client.read_deployment_by_name(f"{deployment}/{deployment}")
        return await client.create_flow_run_from_deployment(dep.id, parameters=parameters)


@dataclass
class ConsumerTally:
    """What the consumer saw: Graph calls that worked and failed, and the Vault versions it used (a
    consumer that ran through a rotation used at least two)."""

    ok: int = 0
    failed: int = 0
    versions: set[int] = field(default_factory=set)
    error: str | None = None  # why the consumer itself stopped early (a Vault read failed)


async def consume(settings: Settings, vault: VaultClient, path: str, stop: asyncio.Event,
                  tally: ConsumerTally, pause_s: float = 0.2) -> None:
    """A consumer of the token at `path`: reads Vault before every Graph call, as consumers must."""
    while not stop.is_set():
        try:
            current = await vault.read_secret(path)
            secret = (await vault.read_secret(settings.meta.app_secret_path)).value
        except Exception as err:  # noqa: BLE001 - a consumer that cannot read Vault has failed
            tally.failed += 1
            tally.error = f"Vault read: {type(err).__name__}"
            return
        tally.versions.add(current.version)
        graph = GraphClient.from_settings(settings.meta, token=current.value, app_secret=secret)
        try:
            await graph.list_phone_numbers(settings.meta.waba_id)
            tally.ok += 1
        except MetaError:
            tally.failed += 1
        finally:
            await graph.aclose()
        await asyncio.sleep(pause_s)


async def tokens_young(graph: GraphClient, vault: VaultClient, paths: list[str], rotate_after_days: int,
                       now: float) -> tuple[bool, str]:
    """Every token at `paths` is valid, expiring, and younger than the policy's rotation age (debug_token).

    `graph`: the verifier's client (no retries: a check that cannot read Meta fails now, it does not
    wait out a run's two-minute retry budget)."""
    bad = []
    for path in paths:
        info = await graph.debug_token((await vault.read_secret(path)).value)
        age_days = (now - (info.issued_at or 0)) / DAY_S
        if not info.is_valid or not info.expires_at or age_days >= rotate_after_days:
            bad.append(f"{path} (valid={info.is_valid}, expires_at={info.expires_at}, {age_days:.0f} d)")
    return not bad, f"old or never-expiring: {bad}" if bad else f"{len(paths)} token(s) young and expiring"
