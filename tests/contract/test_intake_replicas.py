"""Two intake replicas on one PostgreSQL database (WAGUARD_STATE__DSN), through the real pipeline:
each its own app, state directory, starter and connection, only the DSN shared. An alert storm spread
over both starts exactly one run per incident; a delivery taken by one is a replay at the other; an
incident claimed by a replica that stopped before starting it is started by the other.
(Real concurrent connections racing on the same rows: tests/contract/test_state_store.py.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import tests.fixtures.intake as fx
from tests.fixtures.intake import FakeClock, Harness, IntakeEnv, RecordingRuns, am_notification, post_am
from waguard.intake.app import create_app
from waguard.intake.starter import RecordingStarter
from waguard.settings import StateSettings
from waguard.state.backends import incident_openings, open_audit_reader
from waguard.state.intake_pg import PostgresIntakeStore

intake_env = fx.intake_env
pytestmark = pytest.mark.slow


async def replica(env: IntakeEnv, dsn: str, state_dir: Path) -> Harness:
    settings = env.settings.model_copy(update={
        "state": StateSettings(dsn=dsn),
        "intake": env.settings.intake.model_copy(update={"state_dir": state_dir})})
    app = create_app(settings, env.vault, RecordingStarter(), FakeClock(), runs=RecordingRuns())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake.test")
    return Harness(app, env, app.state.intake.dispatcher.starter, RecordingRuns(), FakeClock(), client)


@pytest.fixture
async def two(intake_env: IntakeEnv, pg_dsn: str, tmp_path: Path) -> AsyncIterator[list[Harness]]:
    pair = [await replica(intake_env, pg_dsn, tmp_path / f"replica-{i}") for i in range(2)]
    yield pair
    for h in pair:
        await h.settle()
        await h.client.aclose()
        await h.service.aclose()


async def test_the_replicas_share_one_postgres_store_and_no_sqlite_file(two: list[Harness],
                                                                       tmp_path: Path) -> None:
    assert all(isinstance(h.service.store, PostgresIntakeStore) for h in two)
    answer = (await post_am(two[0], am_notification())).json()
    assert not list(tmp_path.glob("replica-*/intake.sqlite3"))
    # time to contain (a scrape of either replica) reads the openings from the shared database
    read = incident_openings(two[1].service.settings)
    assert read is not None
    assert [(i, p) for i, p, _ in read()] == [(answer["incidents"][0]["incident_key"], "template_abuse")]


async def test_an_alert_storm_over_two_replicas_starts_one_run_per_incident(two: list[Harness]) -> None:
    wabas = [str(100000000 + i) for i in range(10)]
    deliveries = [(two[n % 2], am_notification(waba=w, alerts=1 + n % 3)) for w in wabas for n in range(6)]
    answers = await asyncio.gather(*(post_am(h, body) for h, body in deliveries))
    assert {r.status_code for r in answers} == {200}
    for h in two:
        await h.settle()
    starts = [s for h in two for s in h.starter.starts]
    assert sorted(params["waba_id"] for _, params, _ in starts) == sorted(wabas)
    assert sum(r.json()["outcome"] == "started" for r in answers) == len(wabas)


async def test_a_delivery_taken_by_one_replica_is_a_replay_at_the_other(two: list[Harness]) -> None:
    body = am_notification()
    assert (await post_am(two[0], body)).json()["outcome"] == "started"
    assert (await post_am(two[1], body)).json()["outcome"] == "duplicate"  # same bytes, other replica


async def test_both_replicas_audit_into_one_log_that_evidence_reads(two: list[Harness],
                                                                    tmp_path: Path) -> None:
    body = am_notification()
    started = (await post_am(two[0], body)).json()
    assert (await post_am(two[1], body)).json()["outcome"] == "duplicate"
    reader = open_audit_reader(two[1].service.settings)  # what a run's evidence snapshot reads
    records = [json.loads(line) for line in reader.read_window()]
    assert [r["outcome"] for r in records if r["source"] == "alertmanager"] == ["started", "duplicate"]
    assert started["incidents"][0]["incident_key"] in {r["incident_key"] for r in records}
    assert not list(tmp_path.glob("replica-*/audit.jsonl*"))


async def test_an_incident_left_pending_by_a_stopped_replica_is_started_by_the_other(
        intake_env: IntakeEnv, pg_dsn: str, tmp_path: Path) -> None:
    first = await replica(intake_env, pg_dsn, tmp_path / "a")
    first.service.dispatcher.starter.start = _never_answers  # type: ignore[method-assign]
    assert (await post_am(first, am_notification())).json()["outcome"] == "started"
    await first.service.aclose()  # stopped while its start was still under way
    await first.client.aclose()
    second = await replica(intake_env, pg_dsn, tmp_path / "b")
    try:
        assert second.service.dispatcher.resume_pending() == 1
        await second.settle()
        assert [params["waba_id"] for _, params, _ in second.starter.starts] == ["123456789"]
        assert second.service.store.pending() == []
    finally:
        await second.client.aclose()
        await second.service.aclose()


async def test_an_incident_left_pending_by_a_killed_replica_is_started_by_the_live_other(
        intake_env: IntakeEnv, pg_dsn: str, tmp_path: Path) -> None:
    """No restart: the live replica's periodic sweep takes starts left pending past PENDING_STALE_S,
    and only one of two sweeping replicas takes each."""
    from waguard.intake.dispatch import PENDING_STALE_S

    first = await replica(intake_env, pg_dsn, tmp_path / "a")
    first.service.dispatcher.starter.start = _never_answers  # type: ignore[method-assign]
    live = [await replica(intake_env, pg_dsn, tmp_path / n) for n in ("b", "c")]
    try:
        assert (await post_am(first, am_notification())).json()["outcome"] == "started"
        await first.service.aclose()  # killed before its start went through
        await first.client.aclose()
        assert [h.service.dispatcher.sweep_pending() for h in live] == [0, 0]  # not stale yet
        for h in live:
            h.service.dispatcher.clock.advance(PENDING_STALE_S + 1)  # type: ignore[attr-defined]
        assert sorted(h.service.dispatcher.sweep_pending() for h in live) == [0, 1]
        for h in live:
            await h.settle()
        assert [params["waba_id"] for h in live for _, params, _ in h.starter.starts] == ["123456789"]
        assert live[0].service.store.pending() == []
    finally:
        for h in live:
            await h.client.aclose()
            await h.service.aclose()


async def _never_answers(*_: object) -> str:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_either_replica_exports_what_runs_wrote_to_the_shared_timelines(two: list[Harness],
                                                                             pg_dsn: str) -> None:
    """Runs on any machine write their timelines to PostgreSQL; the rules' "changed by waguard" gauge and
    the time-to-contain histogram must come from there (not from a local directory no run writes)."""
    from tests.detection.test_response_times import sample, scrape
    from waguard.state.timeline_pg import PostgresTimelines

    for h in two:
        h.clock.now = time.time()  # the run's timeline is written in real time
    [incident] = (await post_am(two[0], am_notification(waba="3000000001"))).json()["incidents"]
    timelines = PostgresTimelines(pg_dsn)  # what the run process writes with WAGUARD_STATE__DSN set
    record = timelines.open(incident["incident_key"])
    record.append("open", "started", "template-abuse run", data={"waba_id": "3000000001"})
    record.append("deregister-numbers", "done", "1 deregistered", data={"acted": ["5000000011"]})
    record.append("close", "done", "contained")
    timelines.close()
    m = await scrape(two[1])
    assert sample(m, "waguard_playbook_action_last_seconds", waba_id="3000000001",
                  action="number_deregistered") is not None
    assert sample(m, "waguard_incident_time_to_contain_seconds_count", playbook="template_abuse") == 1.0
