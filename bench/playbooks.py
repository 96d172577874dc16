"""Wall time of each playbook on the local stack, approvals granted the moment the run pauses.

    .venv/bin/python bench/playbooks.py [--repeat N]

Starts its own local stack on free ports (the same code as `waguard up`), runs each playbook N times
against a freshly reseeded Meta simulator, and prints wall time per run and the median. The stand-in
responder approves from a separate Prefect client and, for the leaked secret, does the dashboard step
on the simulator's admin API and writes the new secret to Vault.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.stack import stack_env  # noqa: E402  (one definition of the stack's test settings)


async def responder(flow_name: str, approvals: int, meta_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from pydantic import SecretStr

    from waguard.vault.client import VaultClient

    approvers = ["U0ONCALL", "U0SECLEAD", "U0CISO"]
    given, reset = 0, False
    async with get_client() as client:
        while True:
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
            for run in runs:
                key = run.state.state_details.pause_key or ""
                if key.startswith("approve") and given < approvals:
                    await client.resume_flow_run(run.id, run_input={"approver": approvers[given], "decision": "approve"})
                    given += 1
                elif key.startswith("reset-app-secret") and not reset:
                    new = httpx.post(f"{meta_url}/_sim/app/reset-secret").json()["app_secret"]
                    await VaultClient.from_settings(settings.vault).write_secret(settings.meta.app_secret_path, SecretStr(new))
                    reset = True
            await asyncio.sleep(0.05)


async def reseed(meta_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    """Put the demo business back, keyed with whatever Vault holds now (a run may have rotated it)."""
    from waguard.local.stack import MESSAGING_TOKEN_PATH, with_messaging_service
    from waguard.meta.simulator import demo_seed
    from waguard.vault.client import VaultClient

    vault = VaultClient.from_settings(settings.vault)
    value = lambda path: vault.read_secret(path)  # noqa: E731
    seed = with_messaging_service(
        demo_seed(app_secret=(await value(settings.meta.app_secret_path)).value.get_secret_value(),
                  system_user_token=(await value(settings.meta.token_path)).value.get_secret_value()),
        (await value(MESSAGING_TOKEN_PATH)).value.get_secret_value())
    httpx.post(f"{meta_url}/_sim/seed", json=seed.model_dump(mode="json")).raise_for_status()


async def one(name: str, flow, kwargs: dict, approvals: int, meta_url: str, settings) -> float:  # type: ignore[no-untyped-def]
    helper = asyncio.create_task(responder(name, approvals, meta_url, settings))
    t0 = time.perf_counter()
    result = await flow(**kwargs)
    elapsed = time.perf_counter() - t0
    helper.cancel()
    assert result["status"] == "contained", result
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="waguard-bench-"))
    os.environ.update(stack_env(home))
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.account_takeover import account_takeover
    from flows.leaked_secret import leaked_secret
    from flows.template_abuse import template_abuse
    from waguard.local.stack import LocalStack
    from waguard.settings import load_settings

    settings = load_settings()
    stack = LocalStack(settings, say=lambda _m: None)
    t0 = time.perf_counter()
    stack.start()
    print(f"local stack ready in {time.perf_counter() - t0:.1f} s")
    cases = [
        ("template-abuse", template_abuse, {"template_names": ["account_security_notice"]}, 1),
        ("leaked-secret", leaked_secret, {}, 1),
        ("account-takeover", account_takeover, {"phone_number_ids": ["4000000001"]}, 2),
    ]
    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            for name, flow, kwargs, approvals in cases:
                times = []
                for i in range(args.repeat):
                    asyncio.run(reseed(stack.urls.meta, settings))  # each run starts from the demo business
                    times.append(asyncio.run(one(name, flow, {"incident_id": f"BENCH-{name}-{i}-{time.time_ns()}",
                                                                "poll_interval_s": 1, **kwargs},
                                                   approvals, stack.urls.meta, settings)))
                print(f"{name:<18} runs={len(times)} median={statistics.median(times):.2f}s "
                      f"min={min(times):.2f}s max={max(times):.2f}s")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
