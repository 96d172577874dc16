"""A real Prometheus Alertmanager (Debian's prometheus-alertmanager, installed by scripts/sysdeps.sh)
delivers to the intake over HTTP with its bearer token: the alert starts exactly one Prefect run;
a later notification about the same group joins it, and the resolved one is recorded, starting none.

Without the binary this test fails in CI (CI=true) and skips locally, saying how to install it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName

import tests.fixtures.intake as fx
from tests.fixtures.intake import IntakeEnv
from waguard.intake.app import create_app
from waguard.intake.audit import read_audit
from waguard.intake.starter import PrefectRunStarter
from waguard.local.processes import ChildProcess, ServedApp, free_port

# The intake room's fixtures (tests/fixtures/intake.py), bound here so pytest finds them.
intake_env = fx.intake_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]
FLOW = f"waguard-intake-am-{uuid.uuid4().hex[:8]}"
AM_CONFIG = """
route:
  receiver: intake
  group_by: [alertname, waba_id]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: intake
    webhook_configs:
      - url: {url}
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials_file: {token_file}}}
"""


def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager")
    if found:
        return found
    why = (
        "prometheus-alertmanager is not installed "
        "(run scripts/sysdeps.sh, or apt-get install prometheus-alertmanager)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture
def intake_url(intake_env: IntakeEnv, prefect_server: str) -> Iterator[str]:
    env = intake_env
    starter = PrefectRunStarter(prefect_server, deployments={"template_abuse": f"{FLOW}/template-abuse"})
    app = create_app(env.settings, env.vault, starter, time.time)
    with ServedApp(app, name="intake") as served:
        yield served.url


@pytest.fixture
def alertmanager(tmp_path: Path, intake_url: str, intake_env: IntakeEnv) -> Iterator[str]:
    binary = alertmanager_binary()
    token_file = tmp_path / "am-token"
    token_file.write_text(intake_env.secrets.alertmanager_token)
    token_file.chmod(0o600)
    config = tmp_path / "am.yml"
    config.write_text(AM_CONFIG.format(url=f"{intake_url}/alerts/alertmanager", token_file=token_file))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    am = ChildProcess(
        "Alertmanager",
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            "--cluster.listen-address=",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url={base}",
        ],
        health_url=f"{base}/-/ready",
        log_path=tmp_path / "alertmanager.log",
        ready_timeout_s=30,
    )
    am.start()
    try:
        yield base
    finally:
        am.stop()


async def wait_for(predicate, what: str, timeout_s: float = 30.0):
    """Wait until predicate() is truthy (waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def am_deliveries(env: IntakeEnv) -> list[dict]:
    records = read_audit(env.settings.intake.state_dir / "audit.jsonl")
    return [r for r in records if r["source"] == "alertmanager"]


async def test_alertmanager_alert_starts_exactly_one_run(alertmanager: str, intake_env: IntakeEnv) -> None:
    async with get_client() as client:
        flow_id = await client.create_flow_from_name(FLOW)
        await client.create_deployment(flow_id=flow_id, name="template-abuse")
    waba = str(uuid.uuid4().int % 10**9)
    labels = {
        "alertname": "WabaTemplateRejected",
        "waba_id": waba,
        "severity": "critical",
        "playbook": "template-abuse",
    }

    async with httpx.AsyncClient(base_url=alertmanager, timeout=10) as am:
        r = await am.post(
            "/api/v2/alerts",
            json=[
                {
                    "labels": {**labels, "template": "otp_login"},
                    "annotations": {"summary": "Template otp_login was REJECTED"},
                }
            ],
        )
        assert r.status_code == 200
        await wait_for(
            lambda: [
                r
                for r in read_audit(intake_env.settings.intake.state_dir / "audit.jsonl")
                if r["outcome"] == "run-started"
            ],
            "the run to start",
        )
        first = am_deliveries(intake_env)
        assert [d["outcome"] for d in first] == ["started"] and first[0]["verification"] == "ok"

        # Alertmanager re-sends the group when it changes: a second alert joins the same incident.
        await am.post(
            "/api/v2/alerts",
            json=[
                {"labels": {**labels, "template": "otp_login"}},
                {"labels": {**labels, "template": "refund_now"}},
            ],
        )
        await wait_for(lambda: len(am_deliveries(intake_env)) >= 2, "the group update")
        # Both resolved: recorded, nothing started.
        now = datetime.now(UTC).isoformat()
        await am.post(
            "/api/v2/alerts",
            json=[{"labels": {**labels, "template": t}, "endsAt": now} for t in ("otp_login", "refund_now")],
        )
        await wait_for(
            lambda: any(d["outcome"] == "recorded" for d in am_deliveries(intake_env)),
            "the resolved notification",
        )

    outcomes = [d["outcome"] for d in am_deliveries(intake_env)]
    assert outcomes[0] == "started" and "joined" in outcomes and outcomes[-1] == "recorded"
    assert outcomes.count("started") == 1
    records = read_audit(intake_env.settings.intake.state_dir / "audit.jsonl")
    started = [r for r in records if r["outcome"] == "run-started"]
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW])))
    assert [str(r.id) for r in runs] == [s["run_id"] for s in started] and len(runs) == 1
    params = runs[0].parameters
    assert (
        params["waba_id"] == waba
        and params["severity"] == "SEV1"
        and params["template_names"] == ["otp_login"]
    )
    assert params["initiator"] == "intake:alertmanager"
    assert (
        intake_env.secrets.alertmanager_token
        not in (intake_env.settings.intake.state_dir / "audit.jsonl").read_text()
    )
