"""Run drills: for each scenario reset the world, arm the faults, send the signal to the intake, let
the stand-in responder work the Slack thread, wait for the run to end, verify the end state
independently, score it; then search every store for every secret and write the report."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from waguard.drills import faults as fault_kit
from waguard.drills import report as scoring
from waguard.drills.behaviour import detection_running, play, quiet, wait_for_alert
from waguard.drills.responder import Responder, approval_requests
from waguard.drills.scenario import Scenario
from waguard.drills.scheduled import ConsumerTally, consume, start_deployment
from waguard.drills.verify import Verifier
from waguard.drills.world import reset_world, send_signal
from waguard.local.identities import identity_vault
from waguard.local.stack import StackUrls
from waguard.settings import Settings
from waguard.state.backends import open_audit_reader, open_timelines
from waguard.vault.client import VaultClient

RUN_TIMEOUT_S = 300.0
HUMAN_RUN_TIMEOUT_S = 3600.0  # a person reads the thread, thinks and clicks
CANARY_PREFIXES = ("meta/", "slack/", "intake/", "waguard/")


class DrillRunner:
    def __init__(self, settings: Settings, urls: StackUrls, *, faults: list[str], human: bool = False,
                 delay_s: float = 1.0, say: Callable[[str], None] = print, graph_latency_ms: int = 0) -> None:
        self.settings, self.urls, self.faults = settings, urls, faults
        self.graph_latency_ms = graph_latency_ms  # the benchmark's realistic Graph latency
        self.human, self.delay_s, self.say = human, delay_s, say
        # The stand-in responder, world reset, verifier and canary scan act as the stack's drill identity.
        self.vault = VaultClient.from_settings(identity_vault(settings, "drill"))
        self.seen_runs: set[str] = set()
        self.run_requests: list[dict[str, Any]] = []
        self.secrets: set[str] = set()

    async def run(self, scenarios: list[Scenario]) -> dict[str, Any]:
        started = datetime.now(UTC).isoformat(timespec="seconds")
        clock = time.monotonic()
        results = []
        for scenario in scenarios:
            faults = f" with {', '.join(self.faults)}" if self.faults else ""
            self.say(f"▶ {scenario.name} ({scenario.playbook or 'must start nothing'}){faults}")
            result = await self.scenario(scenario)
            results.append(result)
            self.say(f"  {'✔' if result['contained'] and result['verified'] else '✘'} {scenario.name}: "
                     f"{result['status']}, verified={result['verified']}, "
                     f"time to contain {scoring.seconds(result['time_to_contain_s'])} s")
        self.say("searching every store for every secret (canary scan)...")
        canary = await self.canary()
        report = {"started_at": started, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "stack": dict(self.urls.lines()), "faults": self.faults, "scenarios": results,
                  "canary_hits": len(canary.hits),
                  "canary": {"places": canary.places, "secrets": canary.secrets,
                             "bytes_scanned": canary.bytes_scanned, "hits": [str(h) for h in canary.hits]}}
        report["duration_s"] = round(time.monotonic() - clock, 1)
        report["passed"], report["verdict"] = scoring.verdict(report)  # containment and verification
        report["objectives_met"] = all(s["objectives_met"] for s in results)
        return report

    async def scenario(self, scenario: Scenario) -> dict[str, Any]:
        result: dict[str, Any] = {"name": scenario.name, "playbook": scenario.playbook, "run_id": None,
                                  "incident_id": None, "status": "not-started", "contained": False,
                                  "verified": False, "time_to_contain_s": None, "approval_wait_s": None,
                                  "detection_s": None, "detected_s": None, "marks": {}, "steps": [],
                                  "checks": [], "faults": [], "error": None,
                                  "objectives": scenario.objectives.model_dump(),
                                  # The report reads these even when the scenario never ran.
                                  "objectives_met": False, "objectives_missed": ["not scored: did not run"]}
        busy = await self._active_runs(scenario.playbook) if scenario.playbook else []
        if busy:
            result["error"] = (f"a {scenario.playbook} run is still active ({', '.join(busy)}): it holds the "
                               "playbook's one-run-per-WABA slot; finish or cancel it in the Prefect UI")
            self.say(f"  error: {result['error']}")
            return result
        world = await reset_world(self.settings, self.urls, self.vault, scenario)
        self.secrets.update(world.secrets())
        # Armed for this scenario only: disarmed when it ends, however it ends, before verification reads.
        async with fault_kit.armed(self.faults, self.urls) as logs:
            if self.graph_latency_ms:
                async with httpx.AsyncClient(timeout=30) as http:
                    (
                        await http.post(
                            f"{self.urls.meta}/_sim/faults",
                            json={
                                "kind": "latency",
                                "latency_ms": self.graph_latency_ms,
                                "seconds": RUN_TIMEOUT_S,
                            },
                        )
                    ).raise_for_status()
            responder = Responder(
                self.settings,
                self.urls,
                self.vault,
                scenario.responder.approvers,
                list(scenario.responder.dashboard_steps),
                self.delay_s,
                self.human,
                self.say,
            )
            stop = asyncio.Event()
            consumer: asyncio.Task[None] | None = None
            tally = ConsumerTally()
            t0 = time.time()  # the anomaly's start: the signal's send, or the behaviour's first webhook
            result["marks"]["anomaly"] = t0
            try:
                first = None  # a started deployment's own run
                if scenario.behaviour is not None:
                    t0 = await self._detect(scenario, result)  # once no earlier alert of its kind is active
                elif scenario.start is not None:
                    if scenario.start.consumer:  # reading Vault before the run starts, until it ends
                        consumer = asyncio.create_task(
                            consume(self.settings, self.vault, scenario.start.consumer, stop, tally))
                    first = await start_deployment(scenario.start.deployment, scenario.start.parameters)
                    self.seen_runs.add(str(first.id))
                    result["deployment_run_id"] = str(first.id)
                    self.say(f"  {scenario.start.deployment} run {first.id} started, as its schedule would")
                else:
                    t0 = (await send_signal(self.settings, self.urls, self.vault, scenario))["sent_at"]
                    result["marks"]["anomaly"] = t0
                if scenario.playbook is None:
                    await self._nothing_started(result, t0)
                else:
                    if first is not None and scenario.start is not None and scenario.start.then is None:
                        run = first
                    else:  # the alert's run; a started audit reads the business before it alerts
                        run = await self._find_run(scenario.playbook, t0, timeout_s=120 if first else 60)
                    run_id = str(run.id)
                    # A scheduled run's record is `<deployment>-<run id>` (waguard.playbook.scheduled).
                    incident_id = run.parameters.get("incident_id") or f"{scenario.playbook}-{run_id}"
                    result.update(run_id=run_id, incident_id=incident_id,
                                  run_created_s=round(run.created.timestamp() - t0, 3))  # the intake's share
                    result["marks"]["run_created"] = run.created.timestamp()
                    self.say(f"  run {run_id} started for incident {incident_id}")
                    helpers: list[asyncio.Task[Any]] = [
                        asyncio.create_task(responder.work(run_id, incident_id, stop))]
                    for log in logs:
                        if log.name == "kill-flow":
                            helpers.append(asyncio.create_task(fault_kit.kill_mid_playbook(
                                run_id, self.urls, log, launcher_dir=self.settings.launcher.dir)))
                        elif log.name == "vault-down":
                            helpers.append(asyncio.create_task(self._vault_down_at_approval(run_id, log)))
                    state = await self._wait_final(run_id, [h for h in helpers[1:]])
                    stop.set()
                    if first is not None and scenario.start is not None and str(first.id) != run_id:
                        # The audit that alerted: how it ended and what it found, from its own record.
                        result["deployment_state"] = await self._wait_final(str(first.id), [])
                        result["findings"] = self._findings(f"{scenario.start.deployment}-{first.id}")
                        self.say(f"  {scenario.start.deployment} ended {result['deployment_state']}: "
                                 f"{result['findings']}")
                    async with httpx.AsyncClient(
                        timeout=30
                    ) as http:  # the run's Graph calls, before verifying
                        recorded = (await http.get(f"{self.urls.meta}/_sim/requests")).json()
                    self.run_requests = recorded["requests"]
                    result["graph_calls"] = len([r for r in self.run_requests
                                                 if not r["path"].startswith("/_sim")])
                    await asyncio.gather(*helpers, return_exceptions=True)
                    started = await self._start_time(run_id)
                    result["detection_s"] = round(started - t0, 3) if started else None
                    if started:
                        result["marks"]["run_started"] = started
                    self.say(f"  run ended {state}")
            except Exception as err:  # noqa: BLE001 - a drill reports what went wrong and goes on
                stop.set()
                result["error"] = f"{type(err).__name__}: {str(err)[:300]}"
                self.say(f"  error: {result['error']}")
            if consumer is not None:
                stop.set()
                await consumer
                result["consumer"] = {"ok": tally.ok, "failed": tally.failed,
                                      "vault_versions": sorted(tally.versions), "error": tally.error}
                self.say(f"  consumer: {tally.ok} Graph calls ok, {tally.failed} failed, Vault versions "
                         f"{sorted(tally.versions)}")
        result["faults"] = [log.as_dict() for log in logs]
        result["approvals"] = responder.clicks  # who clicked what, and what the intake answered
        if result["incident_id"]:
            self._score(
                result, open_timelines(self.settings).open(result["incident_id"]).events(), t0
            )
        result["objectives_missed"] = scoring.missed_objectives(result, scenario.objectives.model_dump())
        result["objectives_met"] = not result["objectives_missed"]
        checks = await Verifier(self.settings, self.urls, self.vault, world,
                                consumer=tally if consumer is not None else None).run(scenario.expect)
        result["checks"] = [c.as_dict() for c in checks]
        result["verified"] = all(c.ok for c in checks)
        return result

    def _findings(self, record_id: str) -> list[str]:
        """`kind target (severity)` of each finding a posture audit recorded on its timeline."""
        events = open_timelines(self.settings).open(record_id).events()
        audits = [e for e in events if e.step == "audit"]
        found = audits[-1].data.get("findings", []) if audits else []
        return [f"{f.get('kind')} {f.get('target')} ({f.get('severity')})" for f in found]

    def _score(self, result: dict[str, Any], events: list, t0: float) -> None:
        result["steps"] = scoring.steps(events)
        result["status"] = scoring.outcome(events)
        result["contained"] = result["status"] in scoring.CONTAINED
        result["approval_wait_s"] = scoring.approval_wait_s(events)
        at = scoring.contained_at(events)
        result["time_to_contain_s"] = round(at - t0, 3) if at else None
        if at:
            result["marks"]["contained"] = at

    async def _detect(self, scenario: Scenario, result: dict[str, Any]) -> float:
        """Play the behaviour through the Meta simulator until the intake has received the rule's alert;
        return the anomaly's start (after any earlier alert of the same kind has resolved)."""
        behaviour = scenario.behaviour
        assert behaviour is not None
        s = self.settings.stack
        alertmanager = self.urls.alertmanager or f"http://{s.host}:{s.alertmanager_port}"
        prometheus = self.urls.prometheus or f"http://{s.host}:{s.prometheus_port}"
        await detection_running(prometheus, alertmanager)  # else fail now, not after the timeout
        waited = await quiet(prometheus, behaviour.alert, behaviour.timeout_s)
        if waited >= 1:
            self.say(f"  waited {waited:.0f} s for an earlier {behaviour.alert} to resolve (a new anomaly "
                     "with the same labels would only join it)")
        t0 = time.time()
        result["marks"]["anomaly"] = t0
        stop = asyncio.Event()
        self.say(f"  playing the anomaly through the Meta simulator until {behaviour.alert} reaches the "
                 "intake...")

        async def watch() -> tuple[float, float]:
            try:
                return await wait_for_alert(alertmanager, open_audit_reader(self.settings),  # every replica's
                                            behaviour.alert, t0, behaviour.timeout_s)
            finally:
                stop.set()

        player = asyncio.create_task(play(self.urls.meta, self.urls.intake, behaviour, stop))
        watcher = asyncio.create_task(watch())
        await asyncio.wait({player, watcher}, return_when=asyncio.FIRST_EXCEPTION)
        if player.done() and player.exception() is not None:
            watcher.cancel()
        stop.set()
        played = await player
        fired, received = await watcher
        result["behaviour"] = {"alert": behaviour.alert, "webhooks_sent": played.sent,
                               "answers": played.answers}
        result["marks"].update(alert_fired=fired, alert_received=received)
        result["alert_fired_s"], result["detected_s"] = round(fired - t0, 3), round(received - t0, 3)
        self.say(f"  {behaviour.alert} fired at +{fired - t0:.1f} s, reached the intake at "
                 f"+{received - t0:.1f} s "
                 f"({played.sent} webhooks delivered)")
        return t0

    async def _nothing_started(self, result: dict[str, Any], t0: float, settle_s: float = 10.0) -> None:
        """A behaviour whose alert names no playbook: after the alert, no run of any playbook may start.
        The intake starts runs within a second of a delivery; `settle_s` leaves it ten times that."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName
        from prefect.client.schemas.sorting import FlowRunSort

        await asyncio.sleep(settle_s)
        playbooks = ["leaked-secret", "template-abuse", "account-takeover"]
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=playbooks)),
                                               sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=50)
        started = sorted(f"{r.name} ({r.id})" for r in runs
                         if r.created and r.created.timestamp() >= t0 - 1 and str(r.id) not in self.seen_runs)
        result["runs_started"] = started
        result["contained"] = not started
        result["status"] = "alerted, nothing started" if not started else "a run started"
        self.say(f"  {result['status']}" + (f": {', '.join(started)}" if started else ""))

    async def _active_runs(self, playbook: str) -> list[str]:
        """Runs of `playbook` that are not final (a drill's run would wait for their slot)."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        active = [StateType.RUNNING, StateType.PAUSED, StateType.PENDING, StateType.CANCELLING]
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[playbook])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=active))))
        return [str(r.id) for r in runs]

    async def _find_run(self, playbook: str, t0: float, timeout_s: float = 60) -> Any:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName
        from prefect.client.schemas.sorting import FlowRunSort

        async with get_client() as client:
            for _ in range(int(timeout_s / 0.1)):
                runs = await client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=[playbook])),
                    sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                    limit=10,
                )
                for run in runs:
                    if (
                        str(run.id) not in self.seen_runs
                        and run.created
                        and run.created.timestamp() >= t0 - 1
                    ):
                        self.seen_runs.add(str(run.id))
                        return run
                await asyncio.sleep(0.1)
        raise TimeoutError(f"no {playbook} run started within {timeout_s:.0f} s of the signal")

    async def _wait_final(self, run_id: str, faults: list[asyncio.Task[Any]]) -> str:
        from prefect.client.orchestration import get_client

        limit = HUMAN_RUN_TIMEOUT_S if self.human else RUN_TIMEOUT_S
        deadline = time.monotonic() + limit
        async with get_client() as client:
            while time.monotonic() < deadline:
                state = (await client.read_flow_run(UUID(run_id))).state
                # A killed run is final (crashed) until the fault has retried it: wait for the fault too.
                if state is not None and state.is_final() and all(f.done() for f in faults):
                    await asyncio.sleep(0.3)
                    state = (await client.read_flow_run(UUID(run_id))).state
                    if state is not None and state.is_final():
                        return state.type.value
                await asyncio.sleep(0.2)
        raise TimeoutError(f"run {run_id} did not end within {limit:.0f} s")

    async def _start_time(self, run_id: str) -> float | None:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            run = await client.read_flow_run(UUID(run_id))
        return run.start_time.timestamp() if run.start_time else None

    async def _vault_down_at_approval(self, run_id: str, log: fault_kit.FaultLog) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            for _ in range(int(RUN_TIMEOUT_S / 0.1)):
                channels = (await http.get(f"{self.urls.slack}/_sim/messages")).json().get("channels", {})
                if approval_requests(channels, run_id):
                    break
                await asyncio.sleep(0.1)
        unsealer = fault_kit.seal_vault_for_a_while(self.settings, log)
        await asyncio.to_thread(unsealer.finish)

    async def canary(self) -> Any:
        from waguard.drills.canary import scan_everywhere, vault_secret_values

        values = set(await vault_secret_values(self.vault, CANARY_PREFIXES)) | self.secrets
        return await scan_everywhere(
            self.settings,
            sorted(values),
            meta_url=self.urls.meta,
            slack_url=self.urls.slack,
            prefect_home=self.settings.stack.home / "prefect",
        )


def write_reports(report: dict[str, Any], path: Path) -> Path:
    """The JSON report at `path`, the Markdown and the standalone HTML timelines beside it; returns the
    Markdown path."""
    from waguard.drills.html_report import html

    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = path.with_suffix(".md")
    md.write_text(scoring.markdown(report))
    path.with_suffix(".html").write_text(html(report))
    return md


async def publish_artifact(report_path: Path) -> None:
    """The Markdown report as a Prefect artifact, made by the drill-report flow (`report_flow`)."""
    from waguard.drills.report_flow import publish_drill_report

    await publish_drill_report(str(report_path.resolve()))
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()  # that run's log lines, before a stack we started stops
