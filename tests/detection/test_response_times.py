"""Response objectives on real incidents (issue 14.6): time to detect and time to contain per playbook,
as Prometheus histograms on the intake's /metrics, read through the intake over HTTP."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import tests.fixtures.intake as fx
from tests.fixtures.intake import Harness, am_notification, post_am
from waguard.intake.app import create_app
from waguard.intake.audit import stamp
from waguard.intake.response_times import rule_pending_s, signal_started_at
from waguard.intake.starter import RecordingStarter
from waguard.playbook.timeline import IncidentRecord

intake_env = fx.intake_env


@pytest.fixture
async def intake(intake_env: fx.IntakeEnv, tmp_path: Path) -> AsyncIterator[Harness]:
    """The intake in-process (as tests.fixtures.intake's), its incident timelines in this test's directory."""
    settings = intake_env.settings.model_copy(update={"incidents_dir": tmp_path / "incidents"})
    env = dataclasses.replace(intake_env, settings=settings)
    clock, starter, runs = fx.FakeClock(), RecordingStarter(), fx.RecordingRuns()
    app = create_app(settings, env.vault, starter, clock, runs=runs)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake.test") as client:
        h = Harness(app, env, starter, runs, clock, client)
        yield h
        await h.settle()
    await h.service.aclose()


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one series in a Prometheus text exposition, or None when it is absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics.splitlines():
        m = re.fullmatch(r"([a-z_:]+)\{([^}]*)\} (\S+)", line)
        if m and m.group(1) == name and ",".join(sorted(m.group(2).split(","))) == want:
            return float(m.group(3))
    return None


async def scrape(h: Harness) -> str:
    r = await h.client.get("/metrics")
    assert r.status_code == 200
    return r.text


def firing_since(seconds_ago: float, now: float, group: str = "WabaTemplateSubmissionSpike", alerts: int = 1) -> dict:
    note = am_notification(group=group, waba="3000000001", alerts=alerts)
    for alert in note["alerts"]:
        alert["startsAt"] = stamp(now - seconds_ago)
    return note


async def test_time_to_detect_is_observed_once_per_incident_from_when_the_rule_held(intake: Harness) -> None:
    now = intake.clock.now
    r = await post_am(intake, firing_since(200, now))
    assert r.json()["outcome"] == "started"
    intake.clock.advance(60)
    r = await post_am(intake, firing_since(260, intake.clock.now, alerts=2))  # the group grew: joins
    assert r.json()["outcome"] == "joined"
    m = await scrape(intake)
    name = "waguard_incident_time_to_detect_seconds"
    assert sample(m, f"{name}_count", playbook="template_abuse") == 1.0
    # Fired 200 s ago; the shipped rule's `for: 1m` held before that: its condition held 260 s ago.
    assert sample(m, f"{name}_sum", playbook="template_abuse") == 260.0
    assert sample(m, f"{name}_bucket", playbook="template_abuse", le="120.0") == 0.0
    assert sample(m, f"{name}_bucket", playbook="template_abuse", le="300.0") == 1.0
    assert sample(m, f"{name}_bucket", playbook="template_abuse", le="900.0") == 1.0  # the MTTD objective


async def test_time_to_contain_comes_from_the_runs_timeline_when_it_closes_contained(intake: Harness) -> None:
    intake.clock.now = time.time()  # the run's timeline is written in real time
    opened = intake.clock.now
    r = await post_am(intake, firing_since(30, opened))
    [incident] = r.json()["incidents"]
    name = "waguard_incident_time_to_contain_seconds"
    assert sample(await scrape(intake), f"{name}_count", playbook="template_abuse") is None  # nothing ran yet

    record = IncidentRecord(intake.env.settings.incidents_dir, incident["incident_key"])
    record.append("open", "started", "template-abuse run", data={"waba_id": "3000000001"})
    record.append("delete-templates", "done", "1 deleted", data={"acted": ["5000000011"]})
    assert sample(await scrape(intake), f"{name}_count", playbook="template_abuse") is None  # not closed yet
    record.append("close", "done", "contained")
    m = await scrape(intake)
    assert sample(m, f"{name}_count", playbook="template_abuse") == 1.0
    took = sample(m, f"{name}_sum", playbook="template_abuse")
    assert took is not None and 0 <= took <= time.time() - opened
    assert sample(m, f"{name}_bucket", playbook="template_abuse", le="+Inf") == 1.0

    # An incident whose run failed safe is not contained: it is not counted.
    r = await post_am(intake, firing_since(30, intake.clock.now, group="WabaSendVolumeSpike"))
    [other] = r.json()["incidents"]
    failed = IncidentRecord(intake.env.settings.incidents_dir, other["incident_key"])
    failed.append("open", "started", "run")
    failed.append("close", "failed", "failed safe at approve")
    assert sample(await scrape(intake), f"{name}_count", playbook="template_abuse") == 1.0


def test_each_shipped_alerts_for_is_read_from_detection_rules() -> None:
    pending = rule_pending_s(Path(__file__).resolve().parents[2] / "detection")
    assert pending["WabaTwoStepResetRequested"] == 0 and pending["WabaSpamRateLimited"] == 60
    assert pending["WebhookSignatureFailuresSpike"] == 300 and pending["MetaWebhookVerificationAllFailing"] == 600
    # Meta's and GitHub's own times; an alert this intake has no rule for counts from its startsAt.
    assert signal_started_at("meta", {"entry": [{"time": 1_800_000_100}, {"time": 1_800_000_000}]}) == 1_800_000_000
    assert signal_started_at("github", {"alert": {"created_at": "2027-01-15T08:00:00Z"}}) == 1_800_000_000
    am = {"alerts": [{"status": "firing", "labels": {"alertname": "Other"}, "startsAt": "2027-01-15T08:00:00Z"}]}
    assert signal_started_at("alertmanager", am, pending) == 1_800_000_000
    assert rule_pending_s(None) == {} and signal_started_at("meta", "not a dict") is None
