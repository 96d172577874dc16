"""A flood of refused requests is counted and sampled, not written line by line; health tells the truth.

Through the intake app in-process (the `intake` harness: real OpenBao, recording starter).
"""

from __future__ import annotations

import logging

import httpx
import pytest

import tests.fixtures.intake as fx
from tests.fixtures.intake import Harness, am_headers, am_notification, audit, dumps, github_alert, post_gh
from waguard.intake.app import create_app, create_ops_app
from waguard.intake.starter import RecordingStarter

FLOOD = 300
intake = fx.intake
intake_env = fx.intake_env


async def test_a_forged_flood_writes_one_record_per_kind_with_counts(
    intake: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="waguard.intake.app")
    body = dumps(am_notification())
    for _ in range(FLOOD):
        r = await intake.client.post("/alerts/alertmanager", content=body, headers=am_headers("forged"))
        assert r.status_code == 401
    for _ in range(FLOOD):
        await post_gh(intake, github_alert(), secret="wrong-secret")
    for _ in range(FLOOD):
        await intake.client.post("/alerts/grafana", content=body, headers={"Content-Type": "text/plain"})
    assert intake.starter.starts == []

    written = audit(intake)
    kinds = {(r["source"], r["status"], r["verification"]) for r in written}
    assert kinds == {
        ("alertmanager", 401, "failed:mismatch"),
        ("github", 401, "failed:mismatch"),
        ("grafana", 415, "not-checked"),
    }
    assert len(written) == 3  # one record per kind in this period, not one per request
    assert len([r for r in caplog.records if "failed verification" in r.getMessage()]) == 2

    # Nothing is lost: the counted repeats are written when the period ends (or at shutdown).
    intake.service.flush_rejections(final=True)
    per_kind: dict[str, int] = {}
    for r in audit(intake):
        told = r.get("repeats", 0) + (0 if r["outcome"] == "repeats" else 1)  # a summary is repeats only
        per_kind[r["source"]] = per_kind.get(r["source"], 0) + told
    assert per_kind == {"alertmanager": FLOOD, "github": FLOOD, "grafana": FLOOD}
    metrics = (await intake.client.get("/metrics")).text
    assert (
        f'waguard_intake_signature_failures_total{{reason="mismatch",source="alertmanager"}} {FLOOD}.0'
        in metrics
    )


async def test_the_next_period_writes_again_carrying_the_count(intake: Harness) -> None:
    body = dumps(am_notification())
    for _ in range(5):
        await intake.client.post("/alerts/alertmanager", content=body, headers=am_headers("forged"))
    intake.clock.advance(intake.env.settings.intake.rejection_sample_s)
    await intake.client.post("/alerts/alertmanager", content=body, headers=am_headers("forged"))
    records = audit(intake)
    assert [r.get("repeats") for r in records] == [None, 4]


async def test_accepted_deliveries_are_each_recorded(intake: Harness) -> None:
    for i in range(5):
        r = await intake.client.post(
            "/alerts/alertmanager",
            content=dumps(am_notification(alerts=1 + i)),
            headers=am_headers(intake.env.secrets.alertmanager_token),
        )
        assert r.status_code == 200
    deliveries = [r["outcome"] for r in audit(intake) if r["source"] == "alertmanager"]  # not run-started
    assert deliveries == ["started", "joined", "joined", "joined", "joined"]


async def test_liveness_and_readiness(intake: Harness) -> None:
    assert (await intake.client.get("/healthz")).json() == {"status": "ok"}
    r = await intake.client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "failing": [], "checks": {"vault": "ok", "store": "ok"}}


async def test_metrics_apart_from_the_webhooks(intake: Harness) -> None:
    env = intake.env
    settings = env.settings.model_copy(
        update={
            "intake": env.settings.intake.model_copy(
                update={"metrics_listen": "127.0.0.1:9999", "state_dir": env.settings.intake.state_dir / "x"}
            )
        }
    )
    public = create_app(settings, env.vault, RecordingStarter())
    ops = create_ops_app(public)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=public), base_url="http://i") as pub,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=ops), base_url="http://o") as mon,
    ):
        assert (await pub.get("/metrics")).status_code == 404
        assert (await pub.get("/healthz")).status_code == 200
        r = await mon.get("/metrics")
        assert r.status_code == 200 and "waguard_intake_deliveries" in r.text
        assert (await mon.get("/readyz")).status_code == 200
        assert (await mon.post("/alerts/alertmanager", content=b"{}")).status_code in (404, 405)
    await public.state.intake.aclose()
