"""Faults a drill injects, each through the real part it breaks.

Graph faults go through the Meta simulator's /_sim/faults, Slack 429s through the Slack simulator,
"Vault down" seals the real OpenBao for a while (its unseal key was kept at start), and "kill-flow"
SIGKILLs the process executing the flow run mid-playbook, then asks Prefect to run it again (the UI's
Retry): the re-run must resume, not repeat, which the simulator's request record proves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from waguard.local.stack import StackUrls
from waguard.settings import Settings

FAULTS = ("graph-429", "graph-5xx", "graph-slow", "vault-down", "slack-429", "kill-flow")
VAULT_DOWN_S = 4.0
KILL_LATENCY_MS = 300  # slows each Graph call a little so the kill lands between two of them
GRAPH_FAULTS: dict[str, dict[str, Any]] = {
    "graph-429": {"kind": "http429", "count": 3},
    "graph-5xx": {"kind": "http5xx", "count": 3},
    "graph-slow": {"kind": "latency", "latency_ms": 1500, "seconds": 30},
}
DESTRUCTIVE = ("/deregister", "/register", "/access_tokens", "/message_templates", "/assigned_users")


@dataclass
class FaultLog:
    """What each fault did, for the report."""

    name: str
    applied: bool = False
    notes: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)  # e.g. kill-flow: rerun_start_s after the kill

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "applied": self.applied, "notes": self.notes, "figures": self.figures}


async def inject_before(names: list[str], urls: StackUrls) -> list[FaultLog]:
    """Faults armed before the signal: Graph errors and latency, Slack 429s."""
    logs = []
    async with httpx.AsyncClient(timeout=30) as http:
        for name in names:
            log = FaultLog(name)
            if name in GRAPH_FAULTS:
                spec = {**GRAPH_FAULTS[name], "path_prefix": None}
                (
                    await http.post(
                        f"{urls.meta}/_sim/faults", json={k: v for k, v in spec.items() if v is not None}
                    )
                ).raise_for_status()
                log.applied = True
                log.notes.append(f"Graph simulator armed: {GRAPH_FAULTS[name]}")
            elif name == "slack-429":
                (await http.post(f"{urls.slack}/_sim/ratelimit", json={"count": 3, "retry_after": 1})
                 ).raise_for_status()
                log.applied, log.notes = True, ["next 3 Slack calls answer 429 (Retry-After 1)"]
            elif name == "kill-flow":
                (await http.post(f"{urls.meta}/_sim/faults",
                                 json={"kind": "latency", "latency_ms": KILL_LATENCY_MS, "seconds": 120})
                 ).raise_for_status()
            logs.append(log)
    return logs


async def disarm(urls: StackUrls, logs: list[FaultLog]) -> None:
    """Clear every Graph fault still armed, so none outlives its scenario (a later run would meet it);
    what was left unused is noted on the fault logs, since it never reached the playbook."""
    async with httpx.AsyncClient(timeout=30) as http:
        left = (await http.get(f"{urls.meta}/_sim/faults")).json().get("faults", [])
        (await http.delete(f"{urls.meta}/_sim/faults")).raise_for_status()
    for fault in left:
        kind, remaining = fault["spec"]["kind"], fault.get("remaining")
        for log in logs:
            if GRAPH_FAULTS.get(log.name, {}).get("kind") == kind:
                log.notes.append(
                    f"disarmed at scenario end with {remaining if remaining is not None else 'time'} unused"
                )


@contextlib.asynccontextmanager
async def armed(names: list[str], urls: StackUrls) -> AsyncIterator[list[FaultLog]]:
    """The scenario's faults, armed on entry and disarmed on exit, however the scenario ends."""
    logs: list[FaultLog] = []
    try:
        logs = await inject_before(names, urls)
        yield logs
    finally:
        await disarm(urls, logs)


def seal_vault_for_a_while(settings: Settings, log: FaultLog) -> Any:
    """Seal OpenBao now; it unseals itself after VAULT_DOWN_S. Returns the unsealer to join."""
    from waguard.vault.outage import seal, unseal_after

    home = settings.stack.home
    token_file = settings.vault.token_file or home / "vault-token"
    key = (home / "vault-unseal-key").read_text().strip()
    seal(settings.vault.addr, token_file.read_text().strip())
    log.applied = True
    log.notes.append(f"OpenBao sealed for {VAULT_DOWN_S:.0f} s while the approval was pending")
    return unseal_after(settings.vault.addr, key, VAULT_DOWN_S)


def flow_run_pid(run_id: str, launcher_dir: Path | None = None) -> int | None:
    """The process executing `run_id` on this machine.

    A launcher's run writes its pid to the launcher's run directory (a forked child's /proc environ is
    its parent's); a run of Prefect's serve() runner has PREFECT__FLOW_RUN_ID in its environment.
    """
    if launcher_dir is not None:
        from waguard.launcher.rundir import pid_of

        if (pid := pid_of(launcher_dir, run_id)) is not None:
            return pid
    needle = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except OSError:
            continue
    return None


def mutating_requests(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Graph requests that change something a re-run must not repeat (pure)."""
    return [
        r
        for r in records
        if r.get("method") in ("POST", "DELETE")
        and not str(r.get("path", "")).startswith("/_sim")
        and any(marker in str(r.get("path", "")) for marker in DESTRUCTIVE)
        and (r.get("status") or 200) < 400
    ]


async def kill_mid_playbook(run_id: str, urls: StackUrls, log: FaultLog, timeout_s: float = 120,
                            launcher_dir: Path | None = None) -> bool:
    """Wait for the first destructive Graph call, SIGKILL the flow's process, then Retry the run.

    With a launcher, the retry is also announced on its notify socket (as the intake does for new runs)
    and `figures["rerun_start_s"]` is the time from the kill to the re-run Running again.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import AwaitingRetry

    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(int(timeout_s / 0.05)):
            records = (await http.get(f"{urls.meta}/_sim/requests")).json()["requests"]
            if mutating_requests(records):
                break
            await asyncio.sleep(0.05)
        else:
            log.notes.append("no destructive call seen: nothing to kill")
            return False
    pid = flow_run_pid(run_id, launcher_dir)
    if pid is None:
        log.notes.append("the flow run's process was not found on this machine")
        return False
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    log.applied = True
    log.notes.append(f"SIGKILL to the flow-run process {pid} after its first destructive call")
    async with get_client() as client:
        for _ in range(600):
            state = (await client.read_flow_run(UUID(run_id))).state
            if state is not None and state.is_final():
                break
            await asyncio.sleep(0.2)
        log.notes.append(
            f"Prefect saw the run {state.type.value if state else '?'}; retried it (AwaitingRetry)"
        )
        await client.set_flow_run_state(UUID(run_id), AwaitingRetry(), force=True)
        if launcher_dir is not None:
            from waguard.launcher.pickup import notify_launcher

            notify_launcher(launcher_dir, run_id)
        for _ in range(int(60 / 0.05)):  # the re-run's start, for the report's figure
            state = (await client.read_flow_run(UUID(run_id))).state
            if state is not None and (state.is_running() or state.is_final() or state.is_paused()):
                log.figures["rerun_start_s"] = round(time.monotonic() - killed_at, 3)
                break
            await asyncio.sleep(0.05)
    return True
