"""What the orchestration costs: repeated drills with the stand-in responder at zero delay.

    .venv/bin/python bench/drill.py [--runs N] [--latency-ms 150]

Starts its own local stack on free ports and runs one drill scenario per playbook N times through
the real path (signed signal -> intake -> Prefect run -> Slack clicks -> verification). Prints:

(a) p50/p95 of time_to_contain_s - approval_wait_s with no latency added: the orchestration's own
    cost (alert received -> last containment step verified, people's time taken out). Goal p50 <= 5 s.
(b) With the Meta simulator adding --latency-ms to every Graph call: the playbook's time divided by a
    bare script that makes the same Graph calls (replayed from the simulator's own request record of
    that run, in order, one after another) and the playbook's Vault reads and writes. Goal <= 1.5.
    Two ratios: `ratio` uses the figure of (a) (alert received -> contained, people's time out);
    `run ratio` uses the run alone (run started -> contained, people's time out), which leaves out
    the fixed cost of starting a flow-run process (the detection time, printed in (a) as `detect`).
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
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.stack import stack_env  # noqa: E402  (one definition of the stack's test settings)

SCENARIOS = {"template-abuse": "phishing-template-flagged", "leaked-secret": "github-app-secret-leak",
             "account-takeover": "bm-takeover"}
VAULT_CALLS = {"template-abuse": 4, "leaked-secret": 10, "account-takeover": 10}  # reads + writes per run


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def replay(settings: Any, urls: Any, records: list[dict[str, Any]], vault_calls: int) -> float:
    """The bare script: the run's Graph calls again, sequentially, plus its Vault round trips."""
    from waguard.meta.wire import appsecret_proof
    from waguard.vault.client import VaultClient

    vault = VaultClient.from_settings(settings.vault)
    token = (await vault.read_secret(settings.meta.token_path)).value.get_secret_value()
    secret = (await vault.read_secret(settings.meta.app_secret_path)).value.get_secret_value()
    auth = {"access_token": token, "appsecret_proof": appsecret_proof(token, secret)}
    calls = [r for r in records if not r["path"].startswith("/_sim")]
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=urls.meta, timeout=30) as http:
        for r in calls:
            query = {k: v for k, v in (r.get("query") or {}).items() if k not in ("access_token", "appsecret_proof")}
            if "input_token" in query:
                query["input_token"] = token
            body = {k: v for k, v in (r.get("body") or {}).items() if k not in ("access_token", "appsecret_proof")}
            await http.request(r["method"], r["path"], params={**query, **auth}, data=body or None)
    for i in range(vault_calls):
        await vault.read_secret(settings.meta.token_path)
    return time.perf_counter() - started


async def bench(settings: Any, stack: Any, runs: int, latency_ms: int) -> None:
    from waguard.drills.runner import DrillRunner
    from waguard.drills.scenario import load_scenarios

    scenarios = load_scenarios(settings.runbooks_dir / "drills")
    for label, latency in (("(a) no added latency", 0), (f"(b) {latency_ms} ms per Graph call", latency_ms)):
        print(f"\n{label}: {runs} run(s) per playbook, responder delay 0 s")
        print(f"{'playbook':<18} {'p50 s':>7} {'p95 s':>7} {'min s':>7} {'detect':>7} {'run s':>7}"
              + ("  bare s  ratio  run ratio" if latency else ""))
        for playbook, name in SCENARIOS.items():
            costs, bares, runs_s, detects = [], [], [], []
            for _ in range(runs):
                runner = DrillRunner(settings, stack.urls, faults=[], delay_s=0.0, say=lambda _l: None,
                                     graph_latency_ms=latency)
                result = await runner.scenario(scenarios[name])
                if not (result["contained"] and result["verified"]):
                    print(f"  {name}: {result['status']} verified={result['verified']} {result['error']}")
                    continue
                costs.append(result["time_to_contain_s"] - result["approval_wait_s"])
                detects.append(result["detection_s"])
                runs_s.append(costs[-1] - result["detection_s"])
                if latency:
                    bares.append(await replay(settings, stack.urls, runner.run_requests, VAULT_CALLS[playbook]))
            if not costs:
                continue
            line = (f"{playbook:<18} {pct(costs, 50):>7.2f} {pct(costs, 95):>7.2f} {min(costs):>7.2f} "
                    f"{pct(detects, 50):>7.2f} {pct(runs_s, 50):>7.2f}")
            if latency and bares:
                bare = statistics.median(bares)
                line += f"  {bare:>6.2f}  {pct(costs, 50) / bare:>5.2f}  {pct(runs_s, 50) / bare:>9.2f}"
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency-ms", type=int, default=150)
    args = parser.parse_args()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from waguard.settings import load_settings
    from waguard.stack import LocalStack

    os.environ.update(stack_env(Path(tempfile.mkdtemp(prefix="waguard-bench-drill-"))))
    settings = load_settings()
    stack = LocalStack(settings, say=lambda line: print(f"  {line}", flush=True))
    stack.start()  # before the event loop: it seeds Vault with asyncio.run
    try:
        with temporary_settings(updates={PREFECT_API_URL: settings.prefect.api_url}):
            asyncio.run(bench(settings, stack, args.runs, args.latency_ms))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
