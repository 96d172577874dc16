"""Scale benchmark on the scaled profile (issue 17, item 5): many businesses, repeats, two launchers.

    .venv/bin/python bench/scale.py [--businesses 10] [--wabas 5] [--incidents 200] [--deliveries 10]
                                    [--latency-ms 150] [--cap 4]

Starts `waguard up --profile scaled` on free ports (PostgreSQL + Redis, two Prefect API replicas and a
services process behind HAProxy, two intakes, two launchers each capped at --cap concurrent runs via
WAGUARD_LAUNCHER__LIMIT) with a generated business registry (waguard.drills.fleet): --businesses
businesses of --wabas WABAs each, every business its own Business Manager, app, app secret and token
in the Meta simulator, and its token and app secret in the stack's OpenBao under meta/fleet/b<i>/.

Each incident is a template abuse (the cheapest destructive playbook: one delete per run) on its own
phishing template: one signed Alertmanager notification (its own group, so its own incident) naming the
WABA and the template, delivered --deliveries times with the same bytes (Alertmanager's retries),
directly to the intake replicas in turn. The Meta simulator adds --latency-ms to every Graph call; the
stand-in responder approves every approval request at once (one scan of the Slack simulator per tick).

Capacity is measured in one run of the benchmark, on fresh incidents in each phase: phase A with
launcher 2 stopped (one launcher, at most --cap runs), phase B with both (2 x --cap). Incidents
contained per minute = incidents of the phase / (last run's end - first delivery of the phase).

Why the launcher cap, not the WABA slot, bounds throughput: only one run per playbook and WABA may be
active, so incidents on one WABA queue on its slot, and a queued run still holds one of its launcher's
--cap places while it waits. Incident j is on WABA j mod W (W = businesses x wabas = 50; WABA-major, so
neighbours are on different businesses too), alerts go out in that order, and runs are taken roughly
in creation order: any 2 x --cap = 8 consecutive incidents are on 8 different WABAs, so no run waits
for a slot while the launchers have work. With 200 incidents each WABA has 4, 2 per phase, 50 apart.

Goals: exactly one run per incident (runs of template-abuse created during the bench = incidents;
exactly one `started` answer per incident among its deliveries), each executed once (one fork per
run in the launchers' logs); every incident contained and verified
(run Completed, its template gone from the simulator, every other template present); no destructive
Graph call repeated (simulator request record); no register/deregister over Meta's budget (template
abuse makes none: the check is that there are none over); no concurrent runs above the cap on any
launcher; rate with 2 launchers >= 1.7 x rate with 1; no `database is locked` in the Prefect logs and
no 5xx answered by Prefect through HAProxy. Ends with `goals: met` (exit 0) or `goals: NOT met (...)`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.stack import stack_env  # noqa: E402  (one definition of the stack's test settings)

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
HAPROXY_LINE = re.compile(r"\] (\S+) (\S+)/(\S+) \S+ (-?\d+) ")


@dataclass
class Incident:
    index: int
    waba: str
    template_id: str
    template: str
    key: str | None = None  # the intake's incident key (the run's name)
    outcomes: list[str] = field(default_factory=list)  # one per delivery


@dataclass
class Phase:
    name: str
    launchers: int
    incidents: list[Incident]
    started_at: float = 0.0  # wall clock, first delivery
    ended_at: float = 0.0  # wall clock, last run's end
    states: dict[str, str] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)  # incident key -> flow run id
    peak: list[int] = field(default_factory=list)  # most runs held at once, per launcher
    died: list[str] = field(default_factory=list)  # launchers that exited during the phase

    @property
    def per_minute(self) -> float:
        took = self.ended_at - self.started_at if self.ended_at else 0.0
        return len(self.incidents) / (took / 60) if took > 0 else 0.0


def plan(fleet: Any, count: int, tag: str) -> list[Incident]:
    """Incident j on WABA j mod W (WABA-major order), each with its own phishing template."""
    wabas = fleet.wabas()
    return [Incident(j, wabas[j % len(wabas)][1], f"59{tag}{j:04d}", f"phish_{tag}_{j}")
            for j in range(count)]


class Bench:
    def __init__(self, stack: Any, fleet: Any, args: argparse.Namespace) -> None:
        from waguard.drills.responder import Responder
        from waguard.local.identities import identity_vault
        from waguard.vault.client import VaultClient

        self.stack, self.fleet, self.args = stack, fleet, args
        self.settings, self.urls = stack.settings, stack.urls
        self.api = self.urls.prefect_api
        self.vault = VaultClient.from_settings(identity_vault(self.settings, "drill"))
        self.root_vault = VaultClient.from_settings(self.settings.vault)
        self.responder = Responder(self.settings, self.urls, self.vault, ["U0ONCALL"], [], 0.0, False,
                                   lambda _m: None)
        self.intakes = [c.health_url.removesuffix("/readyz") for c in stack.intakes]
        self.launcher_dirs = [Path(str((c.env or {})["WAGUARD_LAUNCHER__DIR"])) for c in stack.launchers]

    # -- the world -------------------------------------------------------------------------------

    async def seed(self, incidents: list[Incident]) -> None:
        """The fleet's secrets into OpenBao, the fleet and every incident's template into the simulator,
        then the latency on every Graph call."""
        from pydantic import SecretStr

        from waguard.drills.fleet import phishing_template
        from waguard.drills.scenario import load_scenarios
        from waguard.drills.world import reset_world

        for path, value in self.fleet.secrets().items():
            await self.root_vault.write_secret(path, SecretStr(value))
        changes = self.fleet.seed_changes()
        changes["templates"] = [phishing_template(i.template_id, i.waba, i.template) for i in incidents]
        scenario = load_scenarios(self.settings.runbooks_dir / "drills")["phishing-template-flagged"]
        await reset_world(self.settings, self.urls, self.vault, scenario.model_copy(update={"seed": changes}))
        async with httpx.AsyncClient(base_url=self.urls.meta, timeout=30) as sim:
            (await sim.post("/_sim/faults", json={"kind": "latency", "latency_ms": self.args.latency_ms,
                                                  "seconds": 4 * 3600})).raise_for_status()

    # -- one phase -------------------------------------------------------------------------------

    async def phase(self, phase: Phase) -> None:
        stop = asyncio.Event()
        approving = asyncio.create_task(self._approve_all(stop))
        phase.peak = [0] * len(self.launcher_dirs)
        try:
            phase.started_at = time.time()
            await self._deliver(phase.incidents)
            deadline = time.monotonic() + self.args.timeout_s
            keys = [i.key for i in phase.incidents if i.key]
            while time.monotonic() < deadline:
                for n, d in enumerate(self.launcher_dirs):
                    phase.peak[n] = max(phase.peak[n], live_runs(d))
                phase.died = self.dead_launchers(phase.launchers)
                if phase.died:  # its runs would wait for Prefect's recovery automations, or forever
                    break
                runs = await self._runs(keys)
                phase.states = {k: r["state"]["type"] for k, r in runs.items()}
                phase.run_ids = {k: str(r["id"]) for k, r in runs.items()}
                if len(runs) == len(keys) and all(s in FINAL for s in phase.states.values()):
                    ends = [r["end_time"] for r in runs.values() if r.get("end_time")]
                    phase.ended_at = max(datetime.fromisoformat(e).timestamp() for e in ends)
                    break
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            await approving

    async def _deliver(self, incidents: list[Incident]) -> None:
        """Every incident's notification --deliveries times, first deliveries first, over both intakes."""
        token = (await self.vault.read_secret(self.settings.intake.alertmanager_token_path)
                 ).value.get_secret_value()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "User-Agent": "Alertmanager/0.25.0"}
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        gate = asyncio.Semaphore(16)

        def body(i: Incident) -> bytes:
            labels = {"alertname": "WabaTemplateFlagged", "severity": "warning", "waba_id": i.waba,
                      "playbook": "template-abuse", "template": i.template}
            return json.dumps({
                "receiver": "intake", "status": "firing", "version": "4", "truncatedAlerts": 0,
                "groupKey": f'{{}}:{{alertname="WabaTemplateFlagged", template="{i.template}"}}',
                "groupLabels": {"alertname": "WabaTemplateFlagged", "template": i.template},
                "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://am.scaled",
                "alerts": [{"status": "firing", "labels": labels, "annotations": {}, "startsAt": stamp,
                            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph",
                            "fingerprint": f"{i.index:016x}"}]}).encode()

        async def send(http: httpx.AsyncClient, i: Incident, k: int, content: bytes) -> None:
            url = self.intakes[(i.index + k) % len(self.intakes)]
            async with gate:
                for _ in range(20):  # Alertmanager retries an unanswered or 5xx notification
                    try:
                        r = await http.post(f"{url}/alerts/alertmanager", content=content, headers=headers)
                        if r.status_code == 200:
                            answer = r.json()
                            i.outcomes.append(str(answer.get("outcome")))
                            for found in answer.get("incidents") or []:
                                i.key = i.key or str(found["incident_key"])
                            return
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.5)
            i.outcomes.append("never taken")

        bodies = {i.index: body(i) for i in incidents}
        async with httpx.AsyncClient(timeout=30) as http:
            await asyncio.gather(*(send(http, i, k, bodies[i.index])
                                   for k in range(self.args.deliveries) for i in incidents))

    async def _approve_all(self, stop: asyncio.Event) -> None:
        """Every approval request on the Slack simulator, approved once, found in one scan per tick."""
        from waguard.drills.responder import APPROVAL_BLOCK, _messages

        signing = (await self.vault.read_secret(self.settings.slack.signing_secret_path)).value
        async with httpx.AsyncClient(timeout=30) as http:
            while not stop.is_set():
                try:
                    messages = await http.get(f"{self.urls.slack}/_sim/messages")
                    channels = messages.json().get("channels", {})
                    for channel, message in _messages(channels):
                        for block in message.get("blocks") or []:
                            if not str(block.get("block_id", "")).startswith(APPROVAL_BLOCK):
                                continue
                            for element in block.get("elements", []):
                                if element.get("action_id") != "approve":
                                    continue
                                value = {**json.loads(element["value"]), "block_id": block["block_id"]}
                                key = f"{value['run']}:{value['step']}:{value['nonce']}"
                                if key not in self.responder.done and await self.responder._approve(
                                        http, signing, channel, value):
                                    self.responder.done.add(key)
                except (httpx.HTTPError, ValueError):
                    pass
                await asyncio.sleep(0.2)

    async def _runs(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """incident key -> its flow run (runs are named after their incident)."""
        out: dict[str, dict[str, Any]] = {}
        async with httpx.AsyncClient(base_url=self.api, timeout=30) as http:
            for at in range(0, len(names), 200):
                chunk = names[at:at + 200]
                try:
                    r = await http.post("/flow_runs/filter",
                                        json={"flow_runs": {"name": {"any_": chunk}}, "limit": 200})
                    r.raise_for_status()
                except httpx.HTTPError:
                    continue
                out.update({run["name"]: run for run in r.json() if run.get("state")})
        return out

    # -- launchers -------------------------------------------------------------------------------

    def dead_launchers(self, running: int) -> list[str]:
        """The first `running` launchers that have exited, with their exit status."""
        out = []
        for child in self.stack.launchers[:running]:
            if child.proc is not None and child.proc.poll() is not None:
                out.append(f"{child.name} exited with status {child.proc.returncode} (see {child.log_path})")
        return out

    def stop_launcher(self, n: int) -> None:
        self.stack.launchers[n].stop()

    def start_launcher(self, n: int) -> None:
        from waguard.launcher.launcher import READY_FILE

        (self.launcher_dirs[n] / READY_FILE).unlink(missing_ok=True)
        self.stack.launchers[n].start()

    # -- scoring ---------------------------------------------------------------------------------

    async def runs_created_since(self, since: float) -> int:
        after = datetime.fromtimestamp(since, UTC).isoformat()
        async with httpx.AsyncClient(base_url=self.api, timeout=30) as http:
            r = await http.post("/flow_runs/count", json={
                "flows": {"name": {"any_": ["template-abuse"]}},
                "flow_runs": {"expected_start_time": {"after_": after}}})
            r.raise_for_status()
            return int(r.json())

    async def simulator(self) -> tuple[set[str], list[dict[str, Any]], dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.urls.meta, timeout=60) as sim:
            state = (await sim.get("/_sim/state")).json()
            records = (await sim.get("/_sim/requests")).json()["requests"]
        return {t["id"] for t in state["templates"]}, records, state

    def close(self) -> None:
        self.vault.close()
        self.root_vault.close()


def live_runs(launcher_dir: Path) -> int:
    """Run processes of a launcher alive now (a pid file outlives its process until the launcher reaps
    it: an exited or zombie process is not counted)."""
    alive = 0
    for pid_file in (launcher_dir / "runs").glob("*.pid"):
        try:
            stat = Path(f"/proc/{int(pid_file.read_text().strip())}/stat").read_text()
        except (OSError, ValueError):
            continue
        alive += stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    return alive


def over_budget(records: list[dict[str, Any]], limit: int) -> list[str]:
    """Numbers with more register/deregister calls than Meta allows, and any 133016 answer (pure)."""
    calls: dict[str, int] = {}
    for r in records:
        m = re.match(r"^/v[0-9.]+/([0-9]+)/(register|deregister)$", r.get("path", ""))
        if m and r.get("method") == "POST" and r.get("status") == 200:
            calls[m.group(1)] = calls.get(m.group(1), 0) + 1
    found = [f"{n}: {c} register/deregister calls" for n, c in calls.items() if c > limit]
    found += [f"{r['path']}: 133016" for r in records if r.get("error_code") == 133016]
    return found


def log_offsets(home: Path) -> dict[Path, int]:
    logs = home / "logs"
    paths = [logs / "haproxy.log", *logs.glob("prefect-*.log"), *logs.glob("launcher-*.log")]
    return {p: p.stat().st_size for p in paths if p.exists()}


def since(path: Path, start: int) -> str:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read().decode(errors="replace")


def prefect_errors(offsets: dict[Path, int]) -> tuple[int, int, int, int]:
    """Since the offsets: (5xx answered by a Prefect replica through HAProxy, 503s HAProxy answered with
    no replica up, Prefect requests through HAProxy, `database is locked` lines in Prefect's logs)."""
    five, no_server, total, locked = 0, 0, 0, 0
    for path, start in offsets.items():
        if path.name.startswith("launcher-"):
            continue
        text = since(path, start)
        locked += text.count("database is locked")
        if path.name == "haproxy.log":
            for m in HAPROXY_LINE.finditer(text):
                if m.group(1) == "prefect":
                    total += 1
                    if int(m.group(4)) >= 500:
                        no_server += m.group(3) == "<NOSRV>"
                        five += m.group(3) != "<NOSRV>"
    return five, no_server, total, locked


def forks_per_run(offsets: dict[Path, int]) -> dict[str, int]:
    """flow run id -> how many times a launcher forked a process for it (its logs, since the offsets).
    More than once without a crash: two launchers executed the run, one after the other."""
    counts: dict[str, int] = {}
    for path, start in offsets.items():
        if path.name.startswith("launcher-"):
            for run_id in re.findall(r"run ([0-9a-f-]{36}): forked as pid", since(path, start)):
                counts[run_id] = counts.get(run_id, 0) + 1
    return counts


async def bench(stack: Any, fleet: Any, args: argparse.Namespace, home: Path) -> list[str]:
    from waguard.drills.scale_faults import repeated_calls

    b = Bench(stack, fleet, args)
    missed: list[str] = []
    try:
        tag = f"{int(time.time()) % 10000:04d}"
        incidents = plan(fleet, args.incidents, tag)
        await b.seed(incidents)
        half = len(incidents) // 2
        phases = [Phase("A", 1, incidents[:half]), Phase("B", 2, incidents[half:])]
        offsets, t0 = log_offsets(home), time.time()
        for phase in phases:
            if phase.launchers == 1:
                await asyncio.to_thread(b.stop_launcher, 1)
            else:
                await asyncio.to_thread(b.start_launcher, 1)
            await b.phase(phase)
            done = sum(s == "COMPLETED" for s in phase.states.values())
            took = f"{phase.ended_at - phase.started_at:.1f} s" if phase.ended_at else "not all ended"
            print(f"  phase {phase.name}: {phase.launchers} launcher(s), {len(phase.incidents)} incidents, "
                  f"{done} runs completed, {phase.per_minute:.1f} contained/min ({took}), "
                  f"peak runs per launcher {phase.peak}")
            for line in phase.died:
                print(f"    died: {line}")
            if phase.died:
                missed.append(f"a launcher died in phase {phase.name}")
                break
        runs = await b.runs_created_since(t0 - 5)
        present, records, state = await b.simulator()
        five, no_server, prefect_requests, locked = prefect_errors(offsets)
        starts = [sum(o == "started" for o in i.outcomes) for i in incidents]
        deliveries = sum(len(i.outcomes) for i in incidents)
        taken = sum(o != "never taken" for i in incidents for o in i.outcomes)
        states = {k: s for p in phases for k, s in p.states.items()}
        contained = [i for i in incidents if i.key and states.get(i.key) == "COMPLETED"
                     and i.template_id not in present]
        others = {t["id"] for t in state["templates"] if not t["name"].startswith("phish_")}
        repeated = repeated_calls(records)
        forks = forks_per_run(offsets)
        twice = sorted(k for p in phases for k, r in p.run_ids.items() if forks.get(r, 0) > 1)
        budget = over_budget(records, int(state["limits"]["registration_attempts"]))
        a, bb = phases
        ratio = bb.per_minute / a.per_minute if a.per_minute and bb.ended_at else 0.0
        print(f"  deliveries: {taken}/{deliveries} taken by the intakes; incidents started once: "
              f"{sum(s == 1 for s in starts)}/{len(incidents)}; template-abuse runs created: {runs}; "
              f"runs executed more than once: {len(twice)}")
        print(f"  contained and verified: {len(contained)}/{len(incidents)} (run Completed, template gone); "
              f"other templates present: {len(others)}")
        print(f"  repeated destructive calls: {len(repeated)}; register/deregister over budget: "
              f"{len(budget)}; Graph calls recorded: {len(records)}")
        print(f"  Prefect through HAProxy: {prefect_requests} requests, {five} 5xx from a replica, "
              f"{no_server} 503 from HAProxy with no replica up (health checks failed); "
              f"'database is locked': {locked}")
        print(f"  scale-out: {bb.per_minute:.1f} / {a.per_minute:.1f} contained/min = {ratio:.2f}x "
              "(goal >= 1.7)")
        for i in [i for i in incidents if i not in contained][:5]:
            where = "present" if i.template_id in present else "gone"
            run = states.get(i.key or "", "never started")
            print(f"    not contained: {i.key or i.template}: run {run}, template {where}, "
                  f"deliveries {i.outcomes[:3]}")
        for call in repeated[:5]:
            print(f"    repeated: {call}")
        if runs != len(incidents) or any(s != 1 for s in starts) or taken != deliveries:
            missed.append("not exactly one run per incident")
        if twice:
            missed.append(f"{len(twice)} run(s) executed more than once")
        if len(contained) != len(incidents):
            missed.append(f"{len(incidents) - len(contained)} incident(s) not contained")
        if repeated:
            missed.append("a destructive call repeated")
        if budget:
            missed.append("registration budget over-spent")
        if any(p > args.cap for ph in phases for p in ph.peak):
            missed.append("a launcher ran more than its cap")
        if ratio < 1.7:
            missed.append(f"scale-out {ratio:.2f}x < 1.7x")
        if five or locked:
            missed.append("Prefect answered 5xx or said 'database is locked'")
        if no_server:
            missed.append("Prefect's API unavailable through HAProxy (503, no replica passing its check)")
    finally:
        b.close()
    return missed


def main() -> int:
    from waguard.drills.fleet import make_fleet
    from waguard.local.scaled import ScaledStack
    from waguard.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--businesses", type=int, default=10)
    parser.add_argument("--wabas", type=int, default=5, help="WABAs per business")
    parser.add_argument("--incidents", type=int, default=200, help="split in half between phases A and B")
    parser.add_argument("--deliveries", type=int, default=10, help="deliveries of each alert")
    parser.add_argument("--latency-ms", type=int, default=150)
    parser.add_argument("--cap", type=int, default=4, help="concurrent runs per launcher")
    parser.add_argument("--timeout-s", type=float, default=1800, help="per phase")
    args = parser.parse_args()
    fleet = make_fleet(args.businesses, args.wabas)
    home = Path(tempfile.mkdtemp(prefix="waguard-scale-"))
    home.chmod(0o711)  # PostgreSQL runs as user postgres and must reach its data directory
    for k in [k for k in os.environ if k.startswith(("WAGUARD_", "PREFECT_"))]:
        del os.environ[k]
    os.environ.update(stack_env(home))
    os.environ["WAGUARD_RUNBOOKS_DIR"] = str(fleet.runbooks_dir(ROOT / "runbooks", home))
    os.environ["WAGUARD_LAUNCHER__LIMIT"] = str(args.cap)
    os.chdir(ROOT)
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"({os.cpu_count()} cores)")
    stack = ScaledStack(load_settings(), say=lambda _m: None)
    try:
        stack.start()
        print(f"scaled profile up in {stack.started_s['total']:.1f} s; {args.businesses} businesses x "
              f"{args.wabas} WABAs, {args.incidents} incidents x {args.deliveries} deliveries, "
              f"{args.latency_ms} ms per Graph call, cap {args.cap} runs per launcher")
        missed = asyncio.run(bench(stack, fleet, args, home))
    finally:
        stack.stop()
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if missed:
        print(f"goals: NOT met ({'; '.join(missed)}); stack home kept: {home}")
        return 1
    shutil.rmtree(home, ignore_errors=True)
    print("goals: met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
