"""Faults on the scaled profile (`waguard up --profile scaled`), each under real playbook runs.

A storm is N template-abuse incidents: N phishing templates seeded in the Meta simulator, one signed
Alertmanager alert each (its own group, so its own incident) delivered through HAProxy to the intake
replicas, and one stand-in responder approving every run's request in Slack. A fault is applied
while those runs are under way; the storm then waits until every incident is contained again
(its run Completed and its template gone) or has failed safe (its run Failed), and reads the Meta
simulator's request record: no destructive call may appear twice.

    launcher-killed   SIGKILL of one launcher, its zygote and its run processes (the machine died).
                      Nothing here touches its runs: the scaled profile's Prefect automations
                      (waguard.launcher.recovery) crash them once their heartbeats stop (or their
                      claim never started), their slot leases lapse, and they are scheduled again;
                      the other launcher runs them and each resumes from its timeline.
    api-replica-stopped, postgres-restarted, redis-restarted: the process stopped (and restarted).
    intake-killed     with both API replicas down, intake 1 takes the alerts (claimed, not started)
                      and is SIGKILLed; the APIs come back and intake 2's sweep starts them.

Given a generated fleet (waguard.drills.fleet, listed in the stack's business registry), the incidents
go round-robin over the demo WABA and the fleet's: each WABA still queues several runs on its slot,
but the WABAs' runs (and their re-runs after a fault) go in parallel instead of one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from waguard.drills.faults import mutating_requests
from waguard.drills.responder import Responder, approval_requests
from waguard.drills.scenario import load_scenarios
from waguard.drills.world import reset_world
from waguard.local.identities import identity_vault
from waguard.vault.client import VaultClient

if TYPE_CHECKING:
    from waguard.drills.fleet import Fleet
    from waguard.local.processes import ChildProcess
    from waguard.local.scaled import ScaledStack

WABA = "3000000001"
BASE_SCENARIO = "phishing-template-flagged"
FAULTS = ("launcher-killed", "api-replica-stopped", "postgres-restarted", "redis-restarted", "intake-killed")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}




@dataclass
class StormResult:
    fault: str
    incidents: int
    contained: int = 0  # run Completed and its template gone
    failed_safe: int = 0  # run Failed, nothing repeated
    unresolved: list[str] = field(default_factory=list)  # incident ids neither contained nor failed safe
    repeated: list[str] = field(default_factory=list)  # destructive calls made twice
    recovery_s: float | None = None  # fault applied -> every affected incident contained again
    affected: int = 0
    total_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return not self.unresolved and not self.repeated and self.recovery_s is not None

    def line(self) -> str:
        took = f"{self.recovery_s:.1f} s" if self.recovery_s is not None else "NEVER"
        return (f"{self.fault}: {self.contained}/{self.incidents} contained, {self.failed_safe} failed safe, "
                f"{self.affected} affected, contained again {took} after the fault, "
                f"{len(self.repeated)} repeated destructive call(s)")


class Storm:
    """N incidents through the scaled stack, a fault in the middle, and what came of it."""

    def __init__(self, stack: ScaledStack, say: Callable[[str], None] = print, fleet: Fleet | None = None
                 ) -> None:
        self.stack, self.settings, self.urls, self.say = stack, stack.settings, stack.urls, say
        self.fleet = fleet
        self.wabas = [WABA, *(w for _, w in fleet.wabas())] if fleet else [WABA]
        self.waba_of: dict[str, str] = {}  # template name -> the WABA its incident is on
        self.vault = VaultClient.from_settings(identity_vault(self.settings, "drill"))
        self.api = self.urls.prefect_api
        self.messages: dict[str, str] = {}  # incident id -> its run's last state message (why it failed)
        self.since: dict[str, str] = {}  # incident id -> when its run entered its current state (ISO)

    def close(self) -> None:
        self.vault.close()

    async def run(self, fault: str, count: int, *, timeout_s: float = 300) -> StormResult:
        if fault not in (*FAULTS, "none"):
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        t0 = time.monotonic()
        result = StormResult(fault, count)
        tag = f"{int(time.time()) % 100000:05d}"
        templates = [(f"59{tag}{i:03d}", f"phish_{tag}_{i}") for i in range(count)]
        self.waba_of = {name: self.wabas[i % len(self.wabas)] for i, (_, name) in enumerate(templates)}
        scenario = load_scenarios(self.settings.runbooks_dir / "drills")[BASE_SCENARIO]
        seed = self.fleet.seed_changes() if self.fleet else {}
        seed["templates"] = [{"id": tid, "waba_id": self.waba_of[name], "name": name, "language": "en_US",
                              "status": "APPROVED", "category": "MARKETING"} for tid, name in templates]
        if self.fleet:
            await self._fleet_secrets(self.fleet)
        await reset_world(self.settings, self.urls, self.vault, scenario.model_copy(update={"seed": seed}))
        stop = asyncio.Event()
        runs: dict[str, str] = {}  # incident id -> run id
        responder = Responder(self.settings, self.urls, self.vault, list(scenario.responder.approvers), [],
                              0.0, False, lambda _m: None)
        approving = asyncio.create_task(self._approve_all(responder, runs, stop))
        try:
            if fault == "intake-killed":
                incidents, fault_at = await self._intake_killed(templates, result)
            else:
                incidents = await self._alert(templates, self.urls.intake)
                await self._wait(lambda: self._some_in_flight(incidents, runs), 120, "runs under way")
                fault_at = time.monotonic()
                await self._apply(fault, result)
            states = await self._states(incidents, runs)
            affected = [i for i in incidents if states.get(i) != "COMPLETED"]
            result.affected = len(affected)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                states = await self._states(incidents, runs)
                if all(states.get(i) in ("COMPLETED", "FAILED") for i in incidents):
                    break
                await asyncio.sleep(0.5)
            if all(states.get(i) == "COMPLETED" for i in affected):
                result.recovery_s = round(time.monotonic() - fault_at, 1)
        finally:
            stop.set()
            await approving
            await self._heal(fault)
        await self._score(result, incidents, templates, states, runs)
        result.total_s = round(time.monotonic() - t0, 1)
        return result

    # -- the incidents -------------------------------------------------------------------------

    async def _fleet_secrets(self, fleet: Fleet) -> None:
        """Each fleet business's app secret and token into Vault, as the operator (the drill identity
        writes only the demo business's secrets)."""
        from pydantic import SecretStr

        root = VaultClient.from_settings(self.settings.vault)
        try:
            for path, value in fleet.secrets().items():
                await root.write_secret(path, SecretStr(value))
        finally:
            root.close()

    async def _alert(self, templates: list[tuple[str, str]], url: str) -> list[str]:
        """One signed Alertmanager notification per template, concurrently; the incident ids."""
        token = (await self.vault.read_secret(self.settings.intake.alertmanager_token_path)
                 ).value.get_secret_value()
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "User-Agent": "Alertmanager/0.25.0"}

        async def send(http: httpx.AsyncClient, name: str) -> str:
            labels = {"alertname": "WabaTemplateFlagged", "severity": "warning",
                      "waba_id": self.waba_of.get(name, WABA), "playbook": "template-abuse", "template": name}
            body = {"receiver": "intake", "status": "firing", "version": "4", "truncatedAlerts": 0,
                    "groupKey": f'{{}}:{{alertname="WabaTemplateFlagged", template="{name}"}}',
                    "groupLabels": {"alertname": "WabaTemplateFlagged", "template": name},
                    "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://am.scaled",
                    "alerts": [{"status": "firing", "labels": labels, "annotations": {},
                                "startsAt": stamp, "endsAt": "0001-01-01T00:00:00Z",
                                "generatorURL": "http://prometheus/graph", "fingerprint": name[-16:]}]}
            for _ in range(20):  # Alertmanager retries an unanswered or 5xx notification
                try:
                    r = await http.post(f"{url}/alerts/alertmanager", content=json.dumps(body),
                                        headers=headers)
                    if r.status_code == 200:
                        return str(r.json()["incidents"][0]["incident_key"])
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
            raise RuntimeError(f"the intake never took the alert for {name}")

        async with httpx.AsyncClient(timeout=30) as http:
            return list(await asyncio.gather(*(send(http, name) for _, name in templates)))

    async def _approve_all(self, responder: Responder, runs: dict[str, str], stop: asyncio.Event) -> None:
        """The on-call person: every approval request of the storm's runs, approved once each."""
        signing = (await self.vault.read_secret(self.settings.slack.signing_secret_path)).value
        async with httpx.AsyncClient(timeout=30) as http:
            while not stop.is_set():
                try:
                    channels = (await http.get(f"{self.urls.slack}/_sim/messages")).json().get("channels", {})
                    for run_id in set(runs.values()):
                        for channel, value in approval_requests(channels, run_id):
                            key = f"{run_id}:{value['step']}:{value['nonce']}"
                            if key not in responder.done and await responder._approve(
                                    http, signing, channel, value):
                                responder.done.add(key)
                except httpx.HTTPError:
                    pass  # the intake replica or HAProxy is down for a moment: click again
                await asyncio.sleep(0.2)

    async def _states(self, incidents: list[str], runs: dict[str, str]) -> dict[str, str]:
        """incident id -> its run's state type (runs are named after their incident); fills `runs`."""
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                r = await http.post(f"{self.api}/flow_runs/filter",
                                    json={"flow_runs": {"name": {"any_": incidents}}, "limit": 200})
                r.raise_for_status()
        except httpx.HTTPError:
            return {}
        out = {}
        for run in r.json():
            runs[run["name"]] = run["id"]
            out[run["name"]] = run["state"]["type"] if run.get("state") else "?"
            self.messages[run["name"]] = str((run.get("state") or {}).get("message") or "")[:300]
            self.since[run["name"]] = str((run.get("state") or {}).get("timestamp") or "")
        return out

    async def _some_in_flight(self, incidents: list[str], runs: dict[str, str]) -> bool:
        states = await self._states(incidents, runs)
        going = [s for s in states.values() if s in ("RUNNING", "PAUSED")]
        ended = bool(states) and all(s in FINAL for s in states.values())
        return len(going) >= min(4, len(incidents)) or ended

    async def _wait(self, check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not await check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} after {timeout_s:.0f} s")
            await asyncio.sleep(0.2)

    async def _score(self, result: StormResult, incidents: list[str], templates: list[tuple[str, str]],
                     states: dict[str, str], runs: dict[str, str]) -> None:
        async with httpx.AsyncClient(base_url=self.urls.meta, timeout=30) as sim:
            present = {t["id"] for t in (await sim.get("/_sim/state")).json()["templates"]}
            records = (await sim.get("/_sim/requests")).json()["requests"]
        for incident, (tid, _) in zip(incidents, templates, strict=True):
            state = states.get(incident)
            if state == "COMPLETED" and tid not in present:
                result.contained += 1
            elif state == "FAILED":
                result.failed_safe += 1
                result.notes.append(f"{incident} failed: {self.messages.get(incident) or 'no message'}")
            else:
                result.unresolved.append(f"{incident}: run {state or 'never started'}, template "
                                         f"{'still present' if tid in present else 'gone'}")
        result.repeated = repeated_calls(records)
        crashed = await self._crashes(runs)
        if crashed:
            result.notes.append(f"{len(crashed)} run(s) crashed and scheduled again: "
                                + "; ".join(f"{r[:8]}: {why}" for r, why in sorted(crashed.items())))

    async def _crashes(self, runs: dict[str, str]) -> dict[str, str]:
        """run id -> the message of its first Crashed state, for each run that crashed on the way."""
        out: dict[str, str] = {}
        async with httpx.AsyncClient(base_url=self.api, timeout=10) as http:
            for run_id in runs.values():
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    history = (await http.get("/flow_run_states/", params={"flow_run_id": run_id})).json()
                    why = [str(h.get("message") or "")[:80] for h in history if h.get("type") == "CRASHED"]
                    if why:
                        out[run_id] = why[0]
        return out

    # -- the faults ----------------------------------------------------------------------------

    async def _apply(self, fault: str, result: StormResult) -> None:
        if fault == "launcher-killed":
            await self._kill_launcher(result)
        elif fault == "api-replica-stopped":
            await asyncio.to_thread(self.stack.apis[0].stop)
            result.notes.append("Prefect API replica 1 stopped (SIGTERM)")
        elif fault in ("postgres-restarted", "redis-restarted"):
            child = self._child("PostgreSQL" if fault == "postgres-restarted" else "Redis")
            await asyncio.to_thread(_restart, child)
            result.notes.append(f"{child.name} stopped and started again")

    async def _heal(self, fault: str) -> None:
        """Bring the stack back to full strength for the next fault (a restart policy would)."""
        from waguard.launcher.launcher import READY_FILE

        for child in (*self.stack.apis, *self.stack.intakes, *self.stack.launchers):
            if child.proc is not None and child.proc.poll() is not None:
                if child in self.stack.launchers:  # a killed launcher left its ready file behind
                    Path(str((child.env or {})["WAGUARD_LAUNCHER__DIR"]), READY_FILE).unlink(missing_ok=True)
                await asyncio.to_thread(child.start)

    def _child(self, name: str) -> ChildProcess:
        return next(c for c in self.stack._children if c.name == name)

    async def _kill_launcher(self, result: StormResult) -> None:
        """SIGKILL the launcher holding the most runs, with its zygote and its runs (each leads its own
        process group). What happens to those runs next is the product's business: nothing here
        marks, frees or retries them."""
        from waguard.launcher.rundir import forget_run, pid_of

        dirs = [Path(str((c.env or {})["WAGUARD_LAUNCHER__DIR"])) for c in self.stack.launchers]
        held = [sorted(p.stem for p in (d / "runs").glob("*.pid")) for d in dirs]
        victim = max(range(len(dirs)), key=lambda i: len(held[i]))
        launcher = self.stack.launchers[victim]
        assert launcher.proc is not None
        pids = [pid for r in held[victim] if (pid := pid_of(dirs[victim], r)) is not None]
        os.killpg(launcher.proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        launcher.proc.wait(timeout=10)
        for r in held[victim]:  # its files went with its machine: never signal those pids again
            forget_run(dirs[victim], r)
        result.notes.append(f"{launcher.name} killed with {len(pids)} run process(es); "
                            "their recovery left to Prefect's automations")

    async def _intake_killed(self, templates: list[tuple[str, str]],
                             result: StormResult) -> tuple[list[str], float]:
        first = self.stack.intakes[0]
        for api in self.stack.apis:
            await asyncio.to_thread(api.stop)
        direct = first.health_url.removesuffix("/readyz")
        incidents = await self._alert(templates, direct)  # claimed by intake 1; every start fails
        assert first.proc is not None
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=10)
        fault_at = time.monotonic()
        result.notes.append(f"{len(incidents)} incident(s) claimed by intake 1 with Prefect down; "
                            "intake 1 SIGKILLed")
        for api in self.stack.apis:
            await asyncio.to_thread(api.start)
        return incidents, fault_at


def _restart(child: ChildProcess) -> None:
    child.stop()
    child.start()


def repeated_calls(records: list[dict[str, Any]]) -> list[str]:
    """Destructive Graph calls that succeeded more than once for the same target (pure)."""
    seen: dict[str, int] = {}
    for r in mutating_requests(records):
        key = f"{r['method']} {r['path']} {json.dumps(r.get('body') or r.get('query'), sort_keys=True)}"
        seen[key] = seen.get(key, 0) + 1
    return sorted(k for k, n in seen.items() if n > 1)
