"""Small flows the launcher tests deploy: each records its process, then holds until the test lets it go.

Files under `marker_dir` are the tests' window into the runs: `<key>.<n>.pid` when attempt n starts,
`release` to let every held run finish, `<key>.crashed` / `<key>.cancelled` from the hooks (which
Prefect runs in the launcher, not in the dead process).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency

from waguard.launcher import hand_over_current_leases


def _hook(suffix: str):  # type: ignore[no-untyped-def]
    def record(flow, flow_run, state) -> None:  # type: ignore[no-untyped-def]
        params = flow_run.parameters
        (Path(params["marker_dir"]) / f"{params['key']}.{suffix}").write_text(f"{state.type.value} {state.message}\n")

    return record


async def _hold(marker_dir: Path, key: str) -> None:
    from waguard.launcher import preload, tls

    attempt = len(list(marker_dir.glob(f"{key}.*.pid"))) + 1
    # What the zygote saved this run: modules it had to import itself, TLS contexts left unused in stock.
    (marker_dir / f"{key}.{attempt}.preload").write_text(json.dumps({
        "imported": preload.imported_after_fork(), "tls_left": tls.left(),
        "tls_stocked": tls.STOCK * len(tls._stock)}))
    (marker_dir / f"{key}.{attempt}.pid").write_text(f"{os.getpid()} {os.getppid()}\n")
    while not (marker_dir / "release").exists():
        await asyncio.sleep(0.05)


@flow(name="launcher-test-hold", on_crashed=[_hook("crashed")], on_cancellation=[_hook("cancelled")])
async def hold(marker_dir: str, key: str, slot: str | None = None) -> str:
    """Hold until released; with `slot`, inside a one-slot global concurrency limit of that name."""
    where = Path(marker_dir)
    if slot is None:
        await _hold(where, key)
        return key
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(slot, 1)
    async with concurrency(slot, occupy=1, timeout_seconds=300, lease_duration=60, strict=True):
        hand_over_current_leases(Path(os.environ["WAGUARD_LAUNCHER__DIR"]))
        await _hold(where, key)
    return key
