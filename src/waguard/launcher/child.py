"""What a forked run process does: exactly what `python -m prefect.engine` does, minus the imports.

The engine code is Prefect's own (`run_flow`, `handle_engine_signals`, the control-channel listener),
so the child reports Running, Completed, Failed, Paused and its logs just as a served run does; only
the flow object comes from the zygote's memory instead of a fresh import. The internals used here are
pinned by tests/contract/test_launcher_prefect_contract.py.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from waguard.launcher.rundir import record_own_pid

LAUNCHER_DIR_ENV = "WAGUARD_LAUNCHER__DIR"  # also settings.launcher.dir, so the run's settings agree


def run_child(request: dict[str, Any], flows: dict[str, Any], project: Path) -> int:
    """Run one flow run in this (freshly forked) process; the return value is the exit status."""
    with contextlib.suppress(OSError):
        os.setpgid(
            0, 0
        )  # its own process group: a cancel stops the run and whatever it started, nothing else
    os.environ.update({k: str(v) for k, v in request["env"].items()})
    flow_run_id = UUID(str(request["run_id"]))
    record_own_pid(Path(os.environ[LAUNCHER_DIR_ENV]), flow_run_id)

    from prefect._internal.control_listener import configure_from_env
    from prefect._internal.metrics import RunMetrics
    from prefect.engine import _drive_run_flow_result, handle_engine_signals
    from prefect.flow_engine import flow_run_logger, load_flow_run, run_flow

    configure_from_env()  # the cancel-intent channel back to the launcher (PREFECT__CONTROL_*)
    with handle_engine_signals(flow_run_id):
        flow_run = load_flow_run(flow_run_id=flow_run_id)
        run_logger = flow_run_logger(flow_run=flow_run)
        entrypoint = str(request["entrypoint"])
        flow = flows.get(entrypoint)
        if flow is None:  # the zygote could not preload it (reported as a miss): import it now
            run_logger.warning("flow %s was not preloaded; importing it in the run's process", entrypoint)
            from prefect.flows import load_flow_from_entrypoint

            try:
                flow = load_flow_from_entrypoint(str(project / entrypoint), use_placeholder_flow=False)
            except Exception:
                run_logger.error("Unexpected exception encountered when trying to load flow", exc_info=True)
                raise
        with RunMetrics(flow_run, flow):
            # Prefect's runner passes this same adapter; run_flow's annotation says Logger (stub gap).
            result = run_flow(flow, flow_run=flow_run, error_logger=run_logger)  # type: ignore[arg-type]
            _drive_run_flow_result(flow, result)
    sys.stdout.flush()
    return 0
