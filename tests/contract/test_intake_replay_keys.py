"""Replay protection keys on what the signature covers (issue 10.5).

`X-GitHub-Delivery` is not signed: the same signed body under a fresh delivery id is the same event,
and must not reopen an incident whose run has ended. Only a genuinely new event does (`reopened`,
or the alert changed: a new `updated_at`). The same holds for Grafana, whose timestamp header is
signed but changes on every send: the same notification re-signed later is still the same event.
"""

from __future__ import annotations

import pytest

import tests.fixtures.intake as fx
from tests.fixtures.intake import (
    Harness,
    dumps,
    github_alert,
    grafana_headers,
    grafana_notification,
    post_gh,
)

intake = fx.intake
intake_env = fx.intake_env

pytestmark = pytest.mark.slow
T1, T2 = "2026-11-24T10:00:00Z", "2026-11-24T11:30:00Z"


async def end_run_of_first_incident(h: Harness) -> None:
    await h.settle()
    h.starter.ended.add(h.starter._by_key[h.starter.starts[0][2]])
    h.clock.advance(2)  # past the intake's one-second "still running" cache


async def test_same_signed_github_body_under_a_fresh_delivery_id_is_a_replay(intake: Harness) -> None:
    alert = github_alert("created", updated_at=T1)
    assert (await post_gh(intake, alert, delivery="d-1")).json()["outcome"] == "started"
    assert (await post_gh(intake, alert, delivery="d-2")).json()["outcome"] == "duplicate"
    await end_run_of_first_incident(intake)
    r = await post_gh(intake, alert, delivery="d-3")  # after the run ended (cancelled): still a replay
    assert r.json()["outcome"] == "duplicate"
    await intake.settle()
    assert len(intake.starter.starts) == 1


@pytest.mark.parametrize(
    "new_event",
    [github_alert("reopened", updated_at=T2), github_alert("created", updated_at=T2)],
    ids=["reopened", "alert-changed"],
)
async def test_a_genuinely_new_github_event_opens_the_next_incident(intake: Harness, new_event) -> None:
    first = (await post_gh(intake, github_alert("created", updated_at=T1))).json()
    await end_run_of_first_incident(intake)
    second = (await post_gh(intake, new_event)).json()
    assert second["outcome"] == "started"
    assert second["incidents"][0]["incident_key"] != first["incidents"][0]["incident_key"]
    await intake.settle()
    assert len(intake.starter.starts) == 2


async def test_an_update_while_the_run_goes_on_joins_it(intake: Harness) -> None:
    assert (await post_gh(intake, github_alert("created", updated_at=T1))).json()["outcome"] == "started"
    r = await post_gh(intake, github_alert("publicly_leaked", updated_at=T2))
    assert r.json()["outcome"] == "joined"


async def test_github_without_updated_at_keys_on_the_signed_body(intake: Harness) -> None:
    alert = github_alert("created")  # updated_at is nullable in GitHub's schema
    assert (await post_gh(intake, alert, delivery="d-1")).json()["outcome"] == "started"
    await end_run_of_first_incident(intake)
    assert (await post_gh(intake, alert, delivery="d-2")).json()["outcome"] == "duplicate"


async def test_same_grafana_notification_re_signed_later_is_a_replay(intake: Harness) -> None:
    body = dumps(grafana_notification())
    secret = intake.env.secrets.grafana_secret

    async def send(ts: float):
        headers = grafana_headers(secret, body, int(ts))
        return (await intake.client.post("/alerts/grafana", content=body, headers=headers)).json()

    assert (await send(intake.clock.now))["outcome"] == "started"
    await end_run_of_first_incident(intake)
    intake.clock.advance(60)
    assert (await send(intake.clock.now))["outcome"] == "duplicate"  # new signed ts, same event
    await intake.settle()
    assert len(intake.starter.starts) == 1


async def test_a_replayed_signed_body_is_refused_before_it_is_parsed(
        intake: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A captured Meta or Alertmanager body (its nonce is its hash) replayed over and over costs a
    hash and a lookup each time, not a parse of up to 3 MB and the routing: replays are answered as
    duplicates before the JSON parser sees them."""
    from waguard.intake import app as intake_app

    body = fx.meta_delivery(fx.template_change())
    assert (await fx.post_meta(intake, body)).json()["outcome"] == "started"
    parsed: list[bytes] = []
    loads = intake_app.strict_json.loads

    def counting(raw: bytes | str, *args: object) -> object:
        parsed.append(raw if isinstance(raw, bytes) else raw.encode())
        return loads(raw, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(intake_app.strict_json, "loads", counting)
    for _ in range(3):
        assert (await fx.post_meta(intake, body)).json()["outcome"] == "duplicate"
    assert (await fx.post_am(intake, fx.am_notification())).json()["outcome"] == "started"
    assert (await fx.post_am(intake, fx.am_notification())).json()["outcome"] == "duplicate"
    assert len(parsed) == 1  # the first Alertmanager delivery only
    assert fx.audit(intake)[-1]["outcome"] == "duplicate"
