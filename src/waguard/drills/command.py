"""`waguard drill`: use the local stack if it is up, else start it; run the scenarios; report."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from waguard.drills.faults import FAULTS
from waguard.drills.report import table, verdict
from waguard.drills.scenario import load_scenarios, select
from waguard.errors import ConfigError
from waguard.local.stack import LocalStack, StackUrls
from waguard.settings import Settings


def _stack_is_up(urls: StackUrls) -> bool:
    """All of the stack answers (a `waguard up` in another terminal); none of it: start our own."""
    checks = [f"{urls.prefect_api}/health", f"{urls.meta}/_sim/health", f"{urls.slack}/_sim/health",
              f"{urls.intake}/healthz"]
    answered = 0
    for url in checks:
        try:
            answered += httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            pass
    return answered == len(checks)


def drill(settings: Settings, *, scenarios: list[str], everything: bool, faults: list[str], report_path: Path,
          human: bool, delay_s: float, require_objectives: bool = False) -> int:
    """Run the drill; exit 0 when every scenario was contained and verified without a leak (and, with
    `require_objectives`, met its time objectives)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from waguard.drills.runner import DrillRunner, publish_artifact, write_reports

    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise ConfigError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    chosen = select(load_scenarios(settings.runbooks_dir / "drills"), scenarios, everything)
    stack = LocalStack(settings, say=lambda line: print(f"  {line}", flush=True))
    own = not _stack_is_up(stack.urls)
    if own:
        print("starting the local stack for the drill...", flush=True)
        stack.start()
    else:
        print(f"using the local stack already running at {stack.urls.prefect_ui}", flush=True)
    try:
        with temporary_settings(updates={PREFECT_API_URL: settings.prefect.api_url}):
            runner = DrillRunner(settings, stack.urls, faults=faults, human=human, delay_s=delay_s,
                                 say=lambda line: print(line, flush=True))
            report = asyncio.run(runner.run(chosen))
            report["passed"], report["verdict"] = verdict(report, require_objectives=require_objectives)
            md = write_reports(report, report_path)
            try:
                asyncio.run(publish_artifact(report_path))
            except Exception as err:  # noqa: BLE001 - the files still carry the report
                print(f"could not publish the report to Prefect: {type(err).__name__}: {err}")
    finally:
        if own:
            print("stopping the local stack...", flush=True)
            stack.stop()
    print("\n" + table(report))
    print(f"\nreport: {report_path}, {md} and {md.with_suffix('.html')} (timelines; opens offline)")
    return 0 if report["passed"] else 1
