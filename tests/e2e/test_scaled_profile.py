"""`waguard up --profile scaled` on one machine: Prefect on PostgreSQL and Redis, two API replicas and a
services process behind HAProxy, two intake replicas, two launchers. A run created through the
balancer completes, executed by exactly one launcher; it still does with one launcher killed, and
the API still answers with one replica stopped. Nothing answers 5xx through HAProxy meanwhile.

Needs Debian's postgresql, redis-server and haproxy (scripts/sysdeps.sh): fails in CI without them,
skips locally saying how to install them.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.stack import stack_env
from waguard.drills.fleet import make_fleet
from waguard.drills.scale_faults import Storm
from waguard.local.daemons import DaemonError, postgres_bin
from waguard.local.scaled import STATE_DSN_ENV, EventRoundTrip, ScaledStack
from waguard.settings import StateSettings, load_settings
from waguard.state.backends import open_timelines

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
AUDIT = "posture-audit/posture-audit"  # read-only: a run that completes with no approval
INCIDENTS = 20  # issue 17's CI case: 20 incidents, 2 launchers, 2 intakes, one launcher killed
# The storm's incidents go round-robin over the demo WABA and these 4 businesses' WABAs: 4 queued on each
# WABA's slot, the 5 WABAs in parallel (all 20 on one WABA re-ran one at a time after the kill: 125-230 s).
FLEET = make_fleet(4, 1)


def _require_binaries() -> None:
    missing = [name for name in ("redis-server", "haproxy") if shutil.which(name) is None
               and not os.path.exists(f"/usr/sbin/{name}")]
    try:
        postgres_bin("initdb")
    except DaemonError:
        missing.append("postgresql")
    if missing:
        why = f"{', '.join(missing)} not installed (run scripts/sysdeps.sh)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def scaled() -> Iterator[ScaledStack]:
    _require_binaries()
    # A home user postgres can traverse (pytest's tmp dirs are 0700): PostgreSQL runs as postgres.
    home = Path(tempfile.mkdtemp(prefix="waguard-scaled-"))
    home.chmod(0o711)
    # Nothing of the session's own stack (its Vault identity, its Prefect API) may leak into this one.
    saved = {k: v for k, v in os.environ.items() if k.startswith(("WAGUARD_", "PREFECT_"))}
    for k in saved:
        del os.environ[k]
    os.environ.update(stack_env(home))
    os.environ["WAGUARD_RUNBOOKS_DIR"] = str(FLEET.runbooks_dir(ROOT / "runbooks", home))
    stack = ScaledStack(load_settings(), say=lambda _msg: None)
    started = False
    try:
        t0 = time.monotonic()
        stack.start()
        started = True
        print(f"\nscaled profile up in {time.monotonic() - t0:.1f} s; phases: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in stack.started_s.items()))
        yield stack
    finally:
        stack.stop()
        for k in [k for k in os.environ if k.startswith(("WAGUARD_", "PREFECT_"))]:
            del os.environ[k]
        os.environ.update(saved)
        if started:
            shutil.rmtree(home, ignore_errors=True)
        else:  # kept for its logs
            print(f"scaled profile did not start; its home: {home}")


def _api(stack: ScaledStack) -> str:
    return stack.urls.prefect_api


def _run_audit(stack: ScaledStack, timeout_s: float = 60) -> str:
    """Create a run through HAProxy, wait for a final state; returns the run id (it must be Completed)."""
    api = _api(stack)
    deployment = httpx.get(f"{api}/deployments/name/{AUDIT}", timeout=10).raise_for_status().json()
    run = httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run", timeout=10,
                     json={"parameters": {"alert": False}}).raise_for_status().json()
    deadline = time.monotonic() + timeout_s
    state = run["state"]
    while time.monotonic() < deadline:
        state = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=10).raise_for_status().json()["state"]
        if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        time.sleep(0.2)
    assert state["type"] == "COMPLETED", f"run {run['id']} ended {state['type']}: {state.get('message')}"
    return str(run["id"])


def _claims(stack: ScaledStack, run_id: str) -> list[str]:
    """Which launchers' logs say they claimed the run (the launcher logs each claim it won)."""
    return [c.name for c in stack.launchers
            if re.search(rf"run {run_id} \(.*\): claimed", c.log_path.read_text(errors="replace"))]


def _haproxy_5xx(stack: ScaledStack) -> list[str]:
    log = stack.settings.stack.home.resolve() / "logs" / "haproxy.log"
    return [line for line in log.read_text(errors="replace").splitlines()
            if re.search(r'_replicas/\S+ \S+ 5\d\d ', line)]


def test_both_api_replicas_and_the_services_process_answer_through_haproxy(scaled: ScaledStack) -> None:
    for replica in scaled.apis:
        assert httpx.get(replica.health_url, timeout=5).json() == {"message": "OK"}  # /api/ready: db too
    assert httpx.get(f"{_api(scaled)}/ready", timeout=5).json() == {"message": "OK"}
    # Only the services process persists events (the replicas run --no-services): posted through
    # HAProxy, read back through HAProxy.
    probe = EventRoundTrip(_api(scaled))
    deadline = time.monotonic() + 30
    while not probe() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert probe.posted and probe(), "an event posted through HAProxy was never persisted"
    intakes = [httpx.get(c.health_url, timeout=5).status_code for c in scaled.intakes]
    assert intakes == [200, 200]
    assert httpx.get(f"{scaled.urls.intake}/readyz", timeout=5).status_code == 200


def test_run_timelines_land_in_the_shared_database_not_in_files(scaled: ScaledStack) -> None:
    """Issue 17 item 2: a run a launcher forks inherits WAGUARD_STATE__DSN and keeps its timeline in
    PostgreSQL, where every launcher (a retry on another machine) and `waguard incident` read it."""
    run_id = _run_audit(scaled)
    dsn = scaled.shared_state_env()[STATE_DSN_ENV]
    shared = scaled.settings.model_copy(update={"state": StateSettings(dsn=dsn)})
    record = open_timelines(shared).open(f"posture-audit-{run_id}")
    record.verify()
    assert [e.step for e in record.events()][:1] == ["open"], record.events()
    assert not list(scaled.settings.incidents_dir.glob("**/timeline.jsonl"))


def test_incidents_over_two_intakes_end_contained_or_failed_safe_with_one_launcher_killed_mid_run(
    scaled: ScaledStack,
) -> None:
    """Real template-abuse runs from signed alerts spread by HAProxy over both intakes, on 5 WABAs of
    5 businesses (4 incidents queued on each WABA's slot), approved in Slack; the launcher holding the
    most runs is SIGKILLed with its runs mid-storm. As the issue
    defines a fault's outcome: every incident ends contained (run Completed, its template gone) or
    failed safe (run Failed, why printed), and no destructive Graph call was made twice. (Seen once
    under load: 19 contained, 1 failed safe; the reason was not recorded then, it is printed now.)"""
    storm = Storm(scaled, say=lambda _m: None, fleet=FLEET)
    try:
        # Prefect finds the dead runs by their silence: up to 3 heartbeats (90 s) after the kill.
        result = asyncio.run(storm.run("launcher-killed", INCIDENTS, timeout_s=300))
    finally:
        storm.close()
    print(f"\n{result.line()} ({result.total_s} s in all; {'; '.join(result.notes)})")
    assert result.unresolved == [] and result.contained + result.failed_safe == INCIDENTS, result.unresolved
    assert result.repeated == []
    assert sorted(Counter(storm.waba_of.values()).values()) == [4] * 5, storm.waba_of
    assert result.affected > 0 and result.recovery_s is not None
    assert all(c.proc is not None and c.proc.poll() is None for c in scaled.launchers)  # restarted


def test_runs_send_heartbeats_and_the_recovery_automations_exist_once(scaled: ScaledStack) -> None:
    """What recovers a dead launcher's runs (waguard.launcher.recovery): each run process forked by a
    launcher emits prefect.flow-run.heartbeat, read back from the API, and `waguard up` created the
    automations once, again after a second ensure (idempotent)."""
    from prefect.client.orchestration import PrefectClient

    from waguard.launcher.recovery import recovery_automations

    run_id = _run_audit(scaled)
    query = {"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]},
                        "resource": {"id": [f"prefect.flow-run.{run_id}"]}}, "limit": 5}
    deadline = time.monotonic() + 60  # the services process persists events in batches
    while (total := httpx.post(f"{_api(scaled)}/events/filter", timeout=10, json=query)
           .raise_for_status().json()["total"]) == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert total >= 1, f"run {run_id} sent no heartbeat"

    async def names_after_a_second_ensure() -> list[str]:
        await scaled._ensure_recovery()  # what `waguard up` did at start, once more
        async with PrefectClient(_api(scaled)) as client:
            return [a.name for a in await client.read_automations()]

    names = asyncio.run(names_after_a_second_ensure())
    for automation in recovery_automations([], []):
        assert names.count(automation.name) == 1, names


def test_runs_complete_each_executed_by_one_launcher_also_with_one_launcher_killed(
    scaled: ScaledStack,
) -> None:
    runs = [_run_audit(scaled) for _ in range(3)]
    for run_id in runs:
        assert len(_claims(scaled, run_id)) == 1, f"run {run_id} claimed by {_claims(scaled, run_id)}"
    first = scaled.launchers[0]
    assert first.proc is not None
    os.killpg(first.proc.pid, signal.SIGKILL)  # the launcher and its zygote
    first.proc.wait(timeout=10)
    after = _run_audit(scaled)
    assert _claims(scaled, after) == [scaled.launchers[1].name]
    assert _haproxy_5xx(scaled) == []


def test_the_api_still_answers_and_runs_complete_with_one_replica_stopped(scaled: ScaledStack) -> None:
    scaled.apis[0].stop()
    for _ in range(10):  # round robin: half of these would go to the stopped replica without the check
        assert httpx.get(f"{_api(scaled)}/ready", timeout=5).json() == {"message": "OK"}
    _run_audit(scaled)
    assert _haproxy_5xx(scaled) == []
    logs = scaled.settings.stack.home.resolve() / "logs"
    assert not [p.name for p in logs.glob("*.log") if "database is locked" in p.read_text(errors="replace")]
