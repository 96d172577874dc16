"""What a Prefect API replica on PostgreSQL answers while PostgreSQL restarts, and why the scaled
profile's clients retry it (waguard.local.scaled.CLIENT_RETRY_ENV).

One real `prefect server start --no-services` on the session's throwaway PostgreSQL (a database of its
own, migrated by `prefect server database upgrade`). While the server is stopped the replica answers a
request that needs a new database connection with 500, not 503: the refused connection is an OSError,
which Prefect's `is_client_retryable_exception` does not list. A run's `set_state` then crashed its run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from waguard.local.processes import ChildProcess, free_port
from waguard.local.scaled import CLIENT_RETRY_ENV


def _exe(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@pytest.fixture(scope="module")
def prefect_on_pg(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API URL of one Prefect replica (no services) on a database of the throwaway server."""
    import psycopg

    name = f"prefect_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    home = tmp_path_factory.mktemp("prefect-pg")
    port = free_port("127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL":
            f"postgresql+asyncpg://waguard@127.0.0.1:{postgres_server.port}/{name}",
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    subprocess.run([_exe("prefect"), "server", "database", "upgrade", "-y"], env=env, check=True,
                   capture_output=True, timeout=300)
    api = ChildProcess("Prefect API on PostgreSQL",
                       [_exe("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                        "--no-services"],
                       f"http://127.0.0.1:{port}/api/ready", home / "api.log", env=env, ready_timeout_s=180)
    api.start()
    try:
        yield f"http://127.0.0.1:{port}/api"
    finally:
        api.stop()


def _new_flow_run(api: str) -> str:
    flow = httpx.post(f"{api}/flows/", json={"name": "pg-outage"}).json()
    return str(httpx.post(f"{api}/flow_runs/", json={"flow_id": flow["id"], "name": uuid.uuid4().hex,
                                                     "state": {"type": "PENDING"}}).json()["id"])


def test_a_repeated_set_state_that_committed_is_rejected_with_that_state(prefect_on_pg: str) -> None:
    """Why retrying set_state is safe: Prefect's client stamps each proposal with a transition id, and
    PreventDuplicateTransitions answers a repeat with REJECT and the state the first try committed, which
    the engine (propose_state) and the launcher's claim (propose_pending) both take as theirs."""
    run = _new_flow_run(prefect_on_pg)
    body = {"state": {"type": "RUNNING", "name": "Running",
                      "state_details": {"transition_id": str(uuid.uuid4())}}}
    first = httpx.post(f"{prefect_on_pg}/flow_runs/{run}/set_state", json=body).json()
    again = httpx.post(f"{prefect_on_pg}/flow_runs/{run}/set_state", json=body).json()
    assert first["status"] == "ACCEPT"
    assert again["status"] == "REJECT" and again["state"]["id"] == first["state"]["id"]
    assert httpx.get(f"{prefect_on_pg}/flow_runs/{run}").json()["run_count"] == 1


def test_a_set_state_sent_while_postgres_restarts_lands_once_it_is_back(
        prefect_on_pg: str, postgres_server: Any) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_RETRY_EXTRA_CODES, temporary_settings
    from prefect.states import Running

    run = _new_flow_run(prefect_on_pg)
    answers: list[int] = []
    out: dict[str, Any] = {}

    async def propose() -> Any:
        hooks = {"response": [_record(answers)]}
        async with get_client(httpx_settings={"event_hooks": hooks}) as client:
            return await client.set_flow_run_state(run, Running())

    def work() -> None:
        import asyncio

        try:
            with temporary_settings(updates={PREFECT_API_URL: prefect_on_pg,
                                             PREFECT_CLIENT_RETRY_EXTRA_CODES:
                                                 CLIENT_RETRY_ENV["PREFECT_CLIENT_RETRY_EXTRA_CODES"]}):
                out["result"] = asyncio.run(propose())
        except BaseException as err:  # noqa: BLE001 - re-raised below
            out["error"] = err

    postgres_server.stop()
    thread = threading.Thread(target=work)
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while thread.is_alive() and not answers:  # the replica has answered during the outage
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        postgres_server.start_again()
        thread.join(120)
    assert answers and answers[0] in (500, 503), answers  # what a replica says with its database away
    if "error" in out:
        raise out["error"]
    assert out["result"].status.value == "ACCEPT"
    assert httpx.get(f"{prefect_on_pg}/flow_runs/{run}").json()["state"]["type"] == "RUNNING"


def _record(answers: list[int]) -> Any:
    async def hook(response: httpx.Response) -> None:
        if "/set_state" in str(response.request.url):
            answers.append(response.status_code)
    return hook


def test_runs_starting_together_on_a_new_waba_all_get_its_slot_limit(prefect_on_pg: str) -> None:
    """Seen on the scaled profile: four re-runs started in the same instant on a WABA whose slot limit
    did not exist yet; Prefect's upsert reads then creates, so two of them got 409 and failed."""
    import asyncio

    from prefect.client.orchestration import PrefectClient

    from waguard.playbook.slot import ensure_slot_limit

    name = f"waguard:template_abuse:{uuid.uuid4().hex[:10]}"

    async def together() -> list[Any]:
        async with PrefectClient(prefect_on_pg) as client:
            return await asyncio.gather(*(ensure_slot_limit(client, name) for _ in range(8)),
                                        return_exceptions=True)

    assert [r for r in asyncio.run(together()) if isinstance(r, BaseException)] == []
    limits = httpx.post(f"{prefect_on_pg}/v2/concurrency_limits/filter", json={}).json()
    assert [(lim["name"], lim["limit"]) for lim in limits if lim["name"] == name] == [(name, 1)]
