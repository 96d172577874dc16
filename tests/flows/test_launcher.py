"""The launcher on a real Prefect server: one forked process per run, isolation, Crashed, re-run, cancel.

A `waguard worker` process (the launcher, as `waguard up` starts it) executes a small test flow
(tests/support/launcher_flows.py) that records its process and holds until the test releases it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID

import pytest

from waguard.launcher import notify_launcher, pid_of

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = "launcher-test-hold/launcher-test"
POOL = "launcher-test-pool"
pytestmark = pytest.mark.slow


def until(check: Callable[[], object], what: str, timeout_s: float = 90) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def launcher(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    home = tmp_path_factory.mktemp("launcher")
    spec = home / "deployments.yaml"
    spec.write_text("deployments:\n  - name: launcher-test\n    entrypoint: tests/support/launcher_flows.py:hold\n")
    launcher_dir = home / "run"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "WAGUARD_LAUNCHER__DIR": str(launcher_dir),
           "WAGUARD_LAUNCHER__POLL_S": "0.5", "WAGUARD_LAUNCHER__WORK_POOL": POOL}
    with open(home / "launcher.log", "wb") as log:
        proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "waguard"), "worker", "--project", str(ROOT),
                                 "--spec", str(spec)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        until(lambda: (launcher_dir / "ready").exists() or proc.poll() is not None, "the launcher to be ready", 180)
        assert proc.poll() is None, (home / "launcher.log").read_text()[-3000:]
        yield launcher_dir, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


async def start(launcher_dir: Path, marker_dir: Path, key: str, slot: str | None = None) -> UUID:
    from prefect.deployments import arun_deployment

    run = await arun_deployment(DEPLOYMENT, parameters={"marker_dir": str(marker_dir), "key": key, "slot": slot},
                                timeout=0)
    notify_launcher(launcher_dir, run.id)  # as the intake does
    return run.id


async def state_of(run_id: UUID):  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return (await client.read_flow_run(run_id)).state


async def wait_state(run_id: UUID, done: Callable[[object], bool], what: str, timeout_s: float = 90):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = await state_of(run_id)
        if state is not None and done(state):
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id}: timed out waiting for {what}; last state {state}")


def pids(marker_dir: Path, key: str, attempt: int = 1) -> tuple[int, int]:
    pid, parent = (marker_dir / f"{key}.{attempt}.pid").read_text().split()
    return int(pid), int(parent)


async def test_a_killed_run_crashes_alone_frees_its_slot_and_its_rerun_executes(
        launcher: tuple[Path, int], tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import AwaitingRetry

    launcher_dir, launcher_pid = launcher
    slot = f"launcher-test-slot-{tmp_path.name}"
    runs = [await start(launcher_dir, tmp_path, "victim", slot=slot)]
    runs += [await start(launcher_dir, tmp_path, f"sibling{i}") for i in range(3)]
    keys = ["victim", "sibling0", "sibling1", "sibling2"]
    until(lambda: all((tmp_path / f"{k}.1.pid").exists() for k in keys), "every run to execute its flow")

    # One process per run, each forked from the same pre-imported parent (the zygote), not the launcher.
    seen = [pids(tmp_path, k) for k in keys]
    assert len({pid for pid, _ in seen}) == 4 and launcher_pid not in {pid for pid, _ in seen}
    assert len({parent for _, parent in seen}) == 1 and seen[0][1] != launcher_pid
    # Nothing left for the run to import before its first line, and its Prefect clients took the zygote's
    # TLS contexts instead of loading the CA bundle each (preload.py, tls.py).
    for key in keys:
        saved = json.loads((tmp_path / f"{key}.1.preload").read_text())
        assert saved["imported"] == [], saved["imported"]
        assert 0 < saved["tls_left"] < saved["tls_stocked"], saved
    victim_pid = seen[0][0]
    assert pid_of(launcher_dir, runs[0]) == victim_pid  # the drills' kill-flow fault finds it here

    os.kill(victim_pid, signal.SIGKILL)
    crashed = await wait_state(runs[0], lambda s: s.is_final(), "the killed run to end")  # type: ignore[attr-defined]
    assert crashed.is_crashed() and "-9" in (crashed.message or ""), crashed
    async with get_client() as client:  # freed by the launcher (lease id), not by the 60 s lease lapsing
        assert (await client.read_global_concurrency_limit_by_name(slot)).active_slots == 0
    until(lambda: (tmp_path / "victim.crashed").exists(), "the on_crashed hook")
    for run_id in runs[1:]:  # the siblings never noticed
        assert (await state_of(run_id)).is_running()

    (tmp_path / "release").write_text("")
    for run_id in runs[1:]:
        assert (await wait_state(run_id, lambda s: s.is_final(), "a sibling to finish")).is_completed()

    async with get_client() as client:  # the UI's Retry
        await client.set_flow_run_state(runs[0], AwaitingRetry(), force=True)
    notify_launcher(launcher_dir, runs[0])
    assert (await wait_state(runs[0], lambda s: s.is_final(), "the re-run to finish")).is_completed()
    assert pids(tmp_path, "victim", attempt=2)[0] != victim_pid


async def test_a_run_nobody_announced_is_pulled_from_the_work_pool(launcher: tuple[Path, int],
                                                                     tmp_path: Path) -> None:
    """A run made in the UI or by an automation sends no datagram: the launcher finds it in its work
    pool, where it is listed as an online worker."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import WorkerStatus
    from prefect.deployments import arun_deployment

    (tmp_path / "release").write_text("")
    run = await arun_deployment(DEPLOYMENT, parameters={"marker_dir": str(tmp_path), "key": "unannounced"},
                                timeout=0)
    assert (await wait_state(run.id, lambda s: s.is_final(), "the pulled run to finish")).is_completed()
    assert (tmp_path / "unannounced.1.pid").exists()
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(DEPLOYMENT)
        workers = await client.read_workers_for_work_pool(POOL)
    assert deployment.work_pool_name == POOL
    assert [w.status for w in workers if w.name.endswith(f"-{launcher[1]}")] == [WorkerStatus.ONLINE]


async def test_a_datagram_for_a_finished_run_does_not_execute_it_again(launcher: tuple[Path, int],
                                                                        tmp_path: Path) -> None:
    """Prefect accepts Pending from a Completed run: a launcher that claimed before reading would run a
    finished incident again when a repeated start (the same idempotency key) announces it once more."""
    launcher_dir, _ = launcher
    (tmp_path / "release").write_text("")
    run_id = await start(launcher_dir, tmp_path, "once")
    assert (await wait_state(run_id, lambda s: s.is_final(), "the run to finish")).is_completed()
    log = launcher_dir.parent / "launcher.log"
    until(lambda: re.search(f"run {run_id}: process \\d+ exited", log.read_text()),
          "the launcher to reap the run (until then it is in flight, and a datagram for it is not read)")
    notify_launcher(launcher_dir, run_id)  # announced again
    until(lambda: f"run {run_id}: COMPLETED, not Scheduled: left alone" in log.read_text(),
          "the launcher to look at the run again")
    assert (await state_of(run_id)).is_completed()
    assert not (tmp_path / "once.2.pid").exists()


async def test_a_run_cancelled_through_the_api_stops_its_process(launcher: tuple[Path, int], tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    launcher_dir, _ = launcher
    run_id = await start(launcher_dir, tmp_path, "cancelme")
    until(lambda: (tmp_path / "cancelme.1.pid").exists(), "the run to execute")
    pid, _ = pids(tmp_path, "cancelme")
    async with get_client() as client:  # what the UI's Cancel does
        await client.set_flow_run_state(run_id, Cancelling(), force=True)
    assert (await wait_state(run_id, lambda s: s.is_final(), "the run to be cancelled")).is_cancelled()

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    until(gone, "the run's process to exit")
    until(lambda: (tmp_path / "cancelme.cancelled").exists(), "the on_cancellation hook")
