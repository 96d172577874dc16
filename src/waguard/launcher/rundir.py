"""The launcher's run directory: what a run process and its launcher tell each other through files.

    <dir>/notify.sock              the intake's "run X was just created" datagrams (pickup.py)
    <dir>/runs/<flow-run-id>.pid     written by the run's own process before any flow code runs
    <dir>/runs/<flow-run-id>.leases  concurrency-slot lease ids the run holds, one per line

A forked child's /proc/<pid>/environ is its parent's, so the drills find a run's process here, not by
PREFECT__FLOW_RUN_ID. The lease file is how a killed run's slot is freed at once: Prefect releases a
lease by id (`decrement-with-lease`), and only the holder knows the id, so the holder writes it down.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from uuid import UUID


def runs_dir(launcher_dir: Path) -> Path:
    return launcher_dir / "runs"


def pid_file(launcher_dir: Path, flow_run_id: str | UUID) -> Path:
    return runs_dir(launcher_dir) / f"{flow_run_id}.pid"


def lease_file(launcher_dir: Path, flow_run_id: str | UUID) -> Path:
    return runs_dir(launcher_dir) / f"{flow_run_id}.leases"


def record_own_pid(launcher_dir: Path, flow_run_id: str | UUID) -> None:
    """Called in the run's process before its flow code runs."""
    path = pid_file(launcher_dir, flow_run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".pid.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)  # a reader never sees half a number


def pid_of(launcher_dir: Path, flow_run_id: str | UUID) -> int | None:
    """The live process executing `flow_run_id` under a launcher on this machine, if any."""
    try:
        pid = int(pid_file(launcher_dir, flow_run_id).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def hand_over_lease(launcher_dir: Path, lease_id: str | UUID, flow_run_id: str | UUID | None = None) -> bool:
    """Record a slot lease the current run holds, so its launcher frees the slot if the run dies.

    Call it right after acquiring the lease, from inside the run. It is a no-op (returns False) when
    the run was not started by a launcher (its pid file is absent): served runs, direct flow calls.

    Args:
        launcher_dir: settings.launcher.dir (the launcher puts it in each child's environment).
        lease_id: the lease `increment-with-lease` returned.
        flow_run_id: the run holding it; default: the current flow run (prefect.runtime).
    """
    if flow_run_id is None:
        from prefect.runtime import flow_run

        flow_run_id = flow_run.id
    if not flow_run_id or not pid_file(launcher_dir, flow_run_id).exists():
        return False
    with open(lease_file(launcher_dir, flow_run_id), "a") as f:
        f.write(f"{lease_id}\n")
    return True


def hand_over_current_leases(launcher_dir: Path) -> int:
    """`hand_over_lease` for every lease the current flow run acquired with `prefect.concurrency`.

    Prefect's `concurrency(...)` does not return its lease id, but records it on the run's
    ConcurrencyContext the moment it is granted (for its own cleanup). Call this first thing inside
    `async with concurrency(...)`. Pinned by tests/contract/test_launcher_prefect_contract.py.
    """
    from prefect.concurrency.context import ConcurrencyContext

    ctx = ConcurrencyContext.get()
    handed = 0
    for lease_id in list(ctx.cleanup_lease_ids) if ctx is not None else []:
        handed += hand_over_lease(launcher_dir, lease_id)
    return handed


def leases_of(launcher_dir: Path, flow_run_id: str | UUID) -> list[UUID]:
    try:
        lines = lease_file(launcher_dir, flow_run_id).read_text().split()
    except OSError:
        return []
    out = []
    for line in dict.fromkeys(lines):
        with contextlib.suppress(ValueError):
            out.append(UUID(line))
    return out


def forget_run(launcher_dir: Path, flow_run_id: str | UUID) -> None:
    """Remove a finished run's files (after its leases were released)."""
    for path in (pid_file(launcher_dir, flow_run_id), lease_file(launcher_dir, flow_run_id)):
        path.unlink(missing_ok=True)
