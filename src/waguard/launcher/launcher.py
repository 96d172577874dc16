"""The launcher: registers waguard's deployments, picks up their runs, claims each once, forks it.

    intake ──datagram──▶ notify.sock ─────────┐
    work pool, every poll_s (UI, retries) ──┴─▶ read run ─▶ propose Pending (the claim) ─▶ FlowRunExecutor
                                                                                   └─ ForkStarter ─┐
                                                                         run ◀─fork─ zygote ◀──────┘

The claim is Prefect's own rule: the server accepts Pending once per run (PreventPendingTransitions),
so two launchers, or a launcher and a `serve()` runner, never execute the same run. This process
talks to the API and owns the children's exit statuses (it is their subreaper); the zygote, which
forks them, never talks to anything.

Every launcher registers the deployments in one Prefect work pool (settings.launcher.work_pool) and
pulls its runs from there, heartbeating as one of the pool's workers: the UI lists each launcher and
when it was last seen, and the pool is READY while at least one polls it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import yaml

from waguard.launcher.forks import ZygoteProcess, become_subreaper
from waguard.launcher.pickup import NotifySocket
from waguard.launcher.rundir import leases_of
from waguard.launcher.starter import ForkStarter

log = logging.getLogger("waguard.launcher")
READY_FILE = "ready"


@dataclass(frozen=True)
class Deployment:
    name: str  # "<flow name>/<deployment name>"
    entrypoint: str  # as in prefect.yaml, relative to the project
    flow: Any  # the prefect Flow (for on_crashed / on_cancellation hooks, which run here)


@dataclass
class LauncherConfig:
    project: Path
    launcher_dir: Path
    spec: Path | None = None  # prefect.yaml-style file naming the deployments; default <project>/prefect.yaml
    poll_s: float = 2.0
    limit: int = 32
    work_pool: str = "waguard"
    heartbeat_s: float = 10.0  # as a work-pool worker; Prefect marks it offline after 3 missed beats


async def load_deployments(project: Path, spec: Path) -> list[tuple[str, Any, Any]]:
    """(entrypoint, Flow, RunnerDeployment) for each deployment in the spec file."""
    from prefect.flows import Flow, load_flow_from_entrypoint

    from waguard.local.schedules import deployment_schedules

    out = []
    for d in yaml.safe_load(spec.read_text())["deployments"]:
        flow: Flow[..., Any] = load_flow_from_entrypoint(str(project / d["entrypoint"]))
        out.append((d["entrypoint"], flow, await flow.ato_deployment(
            name=d["name"], description=d.get("description"), tags=d.get("tags"),
            parameters=d.get("parameters") or {}, schedules=deployment_schedules(d))))
    return out


@dataclass
class Launcher:
    config: LauncherConfig
    zygote: ZygoteProcess | None = None
    deployments: dict[UUID, Deployment] = field(default_factory=dict)
    inflight: set[UUID] = field(default_factory=set)
    started_at: dict[UUID, float] = field(default_factory=dict)  # monotonic time each run was heard of
    _queue: asyncio.Queue[UUID] = field(default_factory=asyncio.Queue)

    @property
    def dir(self) -> Path:
        return self.config.launcher_dir

    async def run(self, stop: anyio.Event | None = None) -> None:
        """Until `stop` is set (or SIGTERM/SIGINT): pick up, claim and execute runs."""
        from prefect.runner._flow_run_executor import FlowRunExecutorContext
        from prefect.runner._state_proposer import StateProposer

        stop = stop or anyio.Event()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / READY_FILE).unlink(missing_ok=True)
        if not become_subreaper():
            log.warning(
                "could not become the subreaper of run processes; a zygote crash loses their exit status"
            )
        specs = await load_deployments(
            self.config.project, self.config.spec or self.config.project / "prefect.yaml"
        )
        watch = [p for p in (self.config.project / "flows", self.config.project / "tasks",
                             Path(__file__).resolve().parents[1]) if p.is_dir()]  # + waguard itself
        self.zygote = ZygoteProcess(self.config.project, [e for e, _, _ in specs], watch=watch)
        info = await self.zygote.start()
        log.info(
            "zygote %s ready: %d flow(s) preloaded in %ss", info["pid"], len(info["flows"]), info["import_s"]
        )
        await ensure_work_pool(self.config.work_pool)
        for entrypoint, flow, deployment in specs:
            deployment_id = await deployment.aapply(work_pool_name=self.config.work_pool)
            self.deployments[deployment_id] = Deployment(f"{flow.name}/{deployment.name}", entrypoint, flow)
        notify = NotifySocket(self.dir, self.heard)
        try:
            async with FlowRunExecutorContext() as ctx:
                self.ctx, self.proposer = ctx, StateProposer(client=ctx.client)
                self.capacity = anyio.Semaphore(self.config.limit)
                notify.open()
                (self.dir / READY_FILE).write_text(f"{info['pid']}\n")
                log.info(
                    "launcher ready: %d deployment(s), notify socket %s", len(self.deployments), notify.path
                )
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._poll)
                    tg.start_soon(self.zygote.keep_current)
                    tg.start_soon(self._dispatch, tg)
                    tg.start_soon(self._until_signal, stop)
                    await stop.wait()
                    tg.cancel_scope.cancel()
        finally:
            notify.close()
            (self.dir / READY_FILE).unlink(missing_ok=True)
            self.zygote.stop()

    def heard(self, flow_run_id: UUID) -> None:
        """A run id from the notify socket or the poll: look at it soon."""
        self.started_at.setdefault(flow_run_id, time.monotonic())
        self._queue.put_nowait(flow_run_id)

    async def _until_signal(self, stop: anyio.Event) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                log.info("stopping: runs still executing are stopped (SIGTERM, then SIGKILL)")
                stop.set()
                return

    async def _dispatch(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            flow_run_id = await self._queue.get()
            if flow_run_id not in self.inflight:
                self.inflight.add(flow_run_id)
                tg.start_soon(self._launch, flow_run_id)

    async def _poll(self) -> None:
        """The fallback: runs created anywhere else (UI, retries, automations, a missed datagram), pulled
        from the work pool. A run of a deployment this launcher did not load (another version's) is left
        to the launcher that did."""
        name = f"launcher-{socket.gethostname()}-{os.getpid()}"
        beat = 0.0
        while True:
            try:
                if time.monotonic() - beat >= self.config.heartbeat_s:
                    await self.ctx.client.send_worker_heartbeat(
                        self.config.work_pool, name, heartbeat_interval_seconds=self.config.heartbeat_s)
                    beat = time.monotonic()
                due = await self.ctx.client.get_scheduled_flow_runs_for_work_pool(
                    self.config.work_pool, scheduled_before=datetime.now(UTC) + timedelta(seconds=1))
                for response in due:
                    run = response.flow_run
                    if run.deployment_id in self.deployments and run.id not in self.inflight:
                        self.heard(run.id)
            except Exception as err:  # keep polling: the API may be restarting
                log.warning("poll for scheduled runs failed: %s: %s", type(err).__name__, err)
            await anyio.sleep(self.config.poll_s)

    async def _launch(self, flow_run_id: UUID) -> None:
        try:
            await self._claim_and_execute(flow_run_id)
        except Exception:
            log.exception("run %s: launching failed", flow_run_id)
        finally:
            self.inflight.discard(flow_run_id)
            self.started_at.pop(flow_run_id, None)

    async def _claim_and_execute(self, flow_run_id: UUID) -> None:
        """Read, then claim, both once a slot of this launcher's capacity is free. Prefect accepts Pending
        from a finished run (only Pending, Running, Cancelling and Cancelled runs refuse it), so a claim
        proposed without a fresh read that the run is Scheduled could execute a finished run again: a
        repeated start's datagram, or a run that another launcher executed while this one waited for
        capacity (bench/scale.py saw both)."""
        from prefect.exceptions import ObjectNotFound, Pause

        async with self.capacity:
            try:
                run = await self.ctx.client.read_flow_run(flow_run_id)
            except ObjectNotFound:
                return
            if self._ours_and_due(run) is None:
                if run.state is not None and not run.state.is_scheduled():
                    log.info("run %s: %s, not Scheduled: left alone", flow_run_id, run.state.type.value)
                return  # not ours, already claimed or finished, or a run for later (the poll hands it over)
            try:
                ours = await self.proposer.propose_pending(run)
            except Pause:  # a BaseException: another launcher claimed it and it waits for an approval
                return
            if ours:  # else another launcher or runner claimed it
                await self._execute(run)

    def _ours_and_due(self, run: Any) -> Deployment | None:
        """The deployment of a Scheduled run this launcher executes and that is due; else None."""
        deployment = self.deployments.get(run.deployment_id) if run.deployment_id else None
        if deployment is None or run.state is None or not run.state.is_scheduled():
            return None
        scheduled = run.state.state_details.scheduled_time
        if scheduled is not None and scheduled > datetime.now(UTC) + timedelta(seconds=1):
            return None
        return deployment

    async def _execute(self, run: Any) -> None:
        flow_run_id, deployment = run.id, self.deployments[run.deployment_id]
        claimed = time.monotonic()
        # No re-read after the claim: a cancel that lands meanwhile reaches the process through Prefect's
        # cancellation observer, as for any run this context executes.
        assert self.zygote is not None  # started in run() before any run is handed over
        starter = ForkStarter(
            zygote=self.zygote,
            entrypoint=deployment.entrypoint,
            deployment_name=deployment.name,
            launcher_dir=self.dir,
            control_channel=self.ctx.control_channel,
            release_leases=self.release_leases,
        )
        # No separate Submitting proposal (one API call less before the fork): Pending was the claim.
        executor = self.ctx.create_executor(run, starter=starter, resolve_flow=self._resolve_flow,
                                            propose_submitting=False)
        heard = self.started_at.get(flow_run_id, claimed)
        log.info("run %s (%s): claimed %.0f ms after it was heard of", flow_run_id, deployment.name,
                 (claimed - heard) * 1000)
        result = await executor.submit()
        if result is not None and result.crash_unreported:
            log.error(
                "run %s: exited %s and could not be marked Crashed", flow_run_id, result.status_code
            )

    async def _resolve_flow(self, run: Any) -> Any:
        """The flow whose on_crashed / on_cancellation hooks Prefect runs here, in the launcher."""
        return self.deployments[run.deployment_id].flow

    async def release_leases(self, flow_run_id: UUID) -> int:
        """Free the concurrency slots a dead run held (Prefect releases a lease by id)."""
        from prefect.exceptions import ObjectNotFound

        released = 0
        for lease_id in leases_of(self.dir, flow_run_id):
            try:
                await self.ctx.client.release_concurrency_slots_with_lease(lease_id)
                released += 1
            except ObjectNotFound:
                pass  # already released, or lapsed
            except Exception as err:
                if getattr(getattr(err, "response", None), "status_code", None) == 404:
                    continue
                log.warning("run %s: could not release lease %s: %s", flow_run_id, lease_id, err)
        return released


async def ensure_work_pool(name: str) -> None:
    """The pool the launchers pull from, created once (by whichever launcher starts first). Its type is
    Prefect's `process`, so a stock `prefect worker start --pool <name>` could also serve it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(
                name=name, type="process", description="waguard's playbook runs, pulled by its launchers",
                base_job_template=ProcessWorker.get_default_base_job_template()))
        except ObjectAlreadyExists:
            pass


def run_worker(settings: Any, *, project: Path, spec: Path | None = None) -> int:
    """`waguard worker`: the launcher in the foreground until SIGTERM or Ctrl-C."""
    config = LauncherConfig(project=project.resolve(), launcher_dir=settings.launcher.dir.resolve(),
                            spec=spec.resolve() if spec else None, poll_s=settings.launcher.poll_s,
                            limit=settings.launcher.limit, work_pool=settings.launcher.work_pool)
    anyio.run(Launcher(config).run)
    return 0
