"""`ForkStarter`: Prefect's ProcessStarter protocol, starting each run as a child forked by the zygote.

Run under Prefect's `FlowRunExecutorContext` (the harness workers and `prefect flow-run execute` use),
Prefect keeps doing what it does for its own starters: Submitting, cancellation over the control
channel then SIGTERM/SIGKILL of the run's process group, Crashed with the exit status and on_crashed
hooks when a child dies. What this adds: the fork, the run's files, and freeing a dead run's slot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import anyio
import anyio.abc
from prefect.runner._process_manager import ProcessHandle, create_isolated_termination_scope

from waguard.launcher.child import LAUNCHER_DIR_ENV
from waguard.launcher.forks import ZygoteProcess
from waguard.launcher.rundir import forget_run

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.runner._control_channel import ControlChannel

log = logging.getLogger("waguard.launcher")


class ForkStarter:
    def __init__(self, *, zygote: ZygoteProcess, entrypoint: str, deployment_name: str, launcher_dir: Path,
                 control_channel: ControlChannel | None,
                 release_leases: Callable[[UUID], Awaitable[int]]) -> None:
        self.zygote = zygote
        self.entrypoint = entrypoint
        self.deployment_name = deployment_name
        self.launcher_dir = launcher_dir
        self.control_channel = control_channel
        self.release_leases = release_leases
        self.fork_ms: float | None = None

    async def start(self, flow_run: FlowRun,
                    task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED) -> None:
        env = {
            "PREFECT__FLOW_RUN_ID": str(flow_run.id),
            "PREFECT__DEPLOYMENT_NAME": self.deployment_name,
            # as Prefect's own starters: the launcher, not the child, runs on_crashed/on_cancellation hooks
            "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false",
            LAUNCHER_DIR_ENV: str(self.launcher_dir),
        }
        registered = False
        if self.control_channel is not None:
            try:
                port, token = self.control_channel.register(flow_run.id)
                env |= {"PREFECT__CONTROL_PORT": str(port), "PREFECT__CONTROL_TOKEN": token}
                registered = True
            except RuntimeError:  # no loopback listener: cancellation falls back to kill-only
                pass
        begun = time.perf_counter()
        try:
            child = await self.zygote.fork(str(flow_run.id), self.entrypoint, env)
        except BaseException:
            if registered and self.control_channel is not None:
                self.control_channel.unregister(flow_run.id)
            raise
        self.fork_ms = (time.perf_counter() - begun) * 1000
        log.info("run %s: forked as pid %s in %.1f ms", flow_run.id, child.pid, self.fork_ms)
        # The child leads its own process group (the zygote set it before answering).
        # ChildRun has what ProcessHandle uses (.pid, .returncode); Prefect annotates it as a
        # multiprocessing Process.
        handle = ProcessHandle(child, termination_scope=create_isolated_termination_scope(child.pid))  # type: ignore[arg-type]
        task_status.started(handle)
        try:
            code = await child.wait()
        finally:
            if child.returncode not in (None, 0):
                # Free its slots now rather than when their leases lapse; before Prefect marks it Crashed,
                # so a re-run started on that state finds the slot free.
                with anyio.CancelScope(shield=True):
                    released = await self.release_leases(flow_run.id)
                if released:
                    log.info("run %s: released %d slot lease(s) of the dead process", flow_run.id, released)
            forget_run(self.launcher_dir, flow_run.id)
        log.info("run %s: process %s exited with status %s", flow_run.id, child.pid, code)
