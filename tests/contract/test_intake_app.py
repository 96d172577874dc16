"""The intake app end to end in-process: real OpenBao for secrets, a recording starter for runs.

Alertmanager, GitHub and Grafana: happy paths, every refusal with its status and error, replays,
one run per incident, managed-credential matching for GitHub, and what the audit log and the
metrics hold (never a secret, a body or a phone number).
"""

from __future__ import annotations

import pytest

import tests.fixtures.intake as fx
from tests.fixtures.intake import (
    T0,
    Harness,
    am_headers,
    am_notification,
    audit,
    dumps,
    github_alert,
    github_headers,
    grafana_headers,
    grafana_notification,
    meta_delivery,
    post_am,
    post_gh,
    post_meta,
    template_change,
)

# The intake room's fixtures (tests/fixtures/intake.py), bound here so pytest finds them.
intake = fx.intake
intake_env = fx.intake_env

pytestmark = pytest.mark.slow


# --- Alertmanager -------------------------------------------------------------------------------


async def test_alertmanager_firing_starts_one_run_with_policy_parameters(intake: Harness) -> None:
    r = await post_am(intake, am_notification(alerts=2))
    assert r.status_code == 200 and r.json()["outcome"] == "started"
    await intake.settle()
    assert len(intake.starter.starts) == 1
    playbook, params, key = intake.starter.starts[0]
    assert playbook == "template_abuse" and key == params["incident_id"]
    assert params["severity"] == "SEV1" and params["waba_id"] == "123456789"
    assert params["template_names"] == ["otp_login_0", "otp_login_1"]
    assert params["initiator"] == "intake:alertmanager" and params["plan"] is False
    assert params["source"] == "alertmanager:WabaTemplateRejected"


async def test_alertmanager_redelivery_and_group_updates_join_the_run(intake: Harness) -> None:
    first = am_notification()
    assert (await post_am(intake, first)).json()["outcome"] == "started"
    await intake.settle()
    assert (await post_am(intake, first)).json()["outcome"] == "duplicate"  # same bytes
    second = am_notification(alerts=3)  # the group grew
    r = await post_am(intake, second)
    await intake.settle()
    assert r.json()["outcome"] == "joined" and r.json()["incidents"][0]["run_id"] is not None
    resolved = await post_am(intake, am_notification("resolved"))
    assert resolved.json()["outcome"] == "recorded"
    assert len(intake.starter.starts) == 1
    # After it resolved, the same group firing again is a new incident with its own run.
    await post_am(intake, am_notification(alerts=1, severity="warning"))
    await intake.settle()
    assert len(intake.starter.starts) == 2
    keys = [s[2] for s in intake.starter.starts]
    assert keys[0] != keys[1] and keys[1].endswith(":2")


async def test_a_storm_of_the_same_news_reaches_the_run_once_per_parameter_set(intake: Harness) -> None:
    """Each update is a Prefect write, a timeline record and a Slack line on the run: re-sent group
    notifications (new bytes, same targets) add nothing after the first; new targets still go."""
    assert (await post_am(intake, am_notification(alerts=1))).json()["outcome"] == "started"
    await intake.settle()
    for n in range(5):
        again = am_notification(alerts=2)
        again["alerts"][0]["startsAt"] = f"2026-11-24T16:2{n}:00Z"  # other bytes: not a replay
        assert (await post_am(intake, again)).json()["outcome"] == "joined"
        await intake.settle()  # each told before the next arrives: nothing left queued to merge with
    grown = am_notification(alerts=3)
    assert (await post_am(intake, grown)).json()["outcome"] == "joined"
    await intake.settle()
    told = [u.parameters["template_names"] for _, u in intake.starter.updates]
    assert told == [["otp_login_0", "otp_login_1"], ["otp_login_0", "otp_login_1", "otp_login_2"]]


async def test_news_the_run_never_got_is_told_again_by_the_next_delivery(
        intake: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (await post_am(intake, am_notification(alerts=1))).json()["outcome"] == "started"
    await intake.settle()
    intake.service.dispatcher.retry_delays_s = (0.0,)  # give up at once
    delivered = intake.starter.post_update

    async def unreachable(run_id: str, update: object) -> None:
        raise ConnectionError("prefect is away")

    monkeypatch.setattr(intake.starter, "post_update", unreachable)
    assert (await post_am(intake, am_notification(alerts=2))).json()["outcome"] == "joined"
    await intake.settle()
    monkeypatch.setattr(intake.starter, "post_update", delivered)
    again = am_notification(alerts=2)
    again["alerts"][0]["startsAt"] = "2026-11-24T16:59:00Z"
    assert (await post_am(intake, again)).json()["outcome"] == "joined"
    await intake.settle()
    assert [u.parameters["template_names"] for _, u in intake.starter.updates] == [["otp_login_0", "otp_login_1"]]


async def test_alertmanager_quiet_period_opens_a_new_incident(intake: Harness) -> None:
    await post_am(intake, am_notification(alerts=1))
    intake.clock.advance(86400 + 1)
    await post_am(intake, am_notification(alerts=2))
    await intake.settle()
    assert len(intake.starter.starts) == 2


async def test_alertmanager_without_playbook_label_is_recorded(intake: Harness) -> None:
    r = await post_am(intake, am_notification(playbook=None))
    assert r.status_code == 200 and r.json()["outcome"] == "recorded"
    r = await post_am(intake, am_notification(playbook="delete-everything", group="Other"))
    assert r.json()["outcome"] == "recorded"
    assert intake.starter.starts == []


@pytest.mark.parametrize(
    ("headers", "status", "error", "reason"),
    [
        ({"Content-Type": "application/json"}, 401, "unauthorized", "missing"),
        (
            {"Content-Type": "application/json", "Authorization": "Bearer nope"},
            401,
            "unauthorized",
            "mismatch",
        ),
        (
            {"Content-Type": "application/json", "Authorization": "Basic YW06czNjcmV0"},
            401,
            "unauthorized",
            "malformed",
        ),
        ({"Content-Type": "text/plain", "Authorization": "Bearer x"}, 415, "unsupported_media_type", None),
    ],
)
async def test_alertmanager_refusals(intake: Harness, headers, status, error, reason) -> None:
    r = await intake.client.post("/alerts/alertmanager", content=dumps(am_notification()), headers=headers)
    assert r.status_code == status and r.json()["error"] == error
    assert intake.starter.starts == []
    metrics = (await intake.client.get("/metrics")).text
    if reason:
        assert (
            f'waguard_intake_signature_failures_total{{reason="{reason}",source="alertmanager"}} 1.0'
            in metrics
        )


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"\xff\xfe", 400, "malformed_json"),
        (dumps({**am_notification(), "version": "3"}), 400, "unsupported_event"),
        (dumps([1, 2]), 400, "unsupported_event"),
        (dumps({**am_notification(), "status": "exploded"}), 422, "invalid_payload"),
        (dumps({**am_notification(), "alerts": "nope"}), 422, "invalid_payload"),
        (dumps({k: v for k, v in am_notification().items() if k != "groupKey"}), 422, "invalid_payload"),
    ],
)
async def test_alertmanager_bad_bodies_after_valid_auth(intake: Harness, body, status, error) -> None:
    r = await intake.client.post(
        "/alerts/alertmanager", content=body, headers=am_headers(intake.env.secrets.alertmanager_token)
    )
    assert (r.status_code, r.json()["error"]) == (status, error)
    assert intake.starter.starts == []


async def test_body_size_limit(intake: Harness) -> None:
    limit = intake.env.settings.intake.max_body_bytes
    big = b'{"pad":"' + b"x" * limit + b'"}'
    r = await intake.client.post(
        "/alerts/alertmanager", content=big, headers=am_headers(intake.env.secrets.alertmanager_token)
    )
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"

    async def chunks():  # no Content-Length: the cap holds while streaming
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    r = await intake.client.post(
        "/alerts/alertmanager", content=chunks(), headers=am_headers(intake.env.secrets.alertmanager_token)
    )
    assert r.status_code == 413


# --- GitHub -------------------------------------------------------------------------------------


async def test_github_managed_token_starts_leaked_secret_once(intake: Harness) -> None:
    leaked = intake.env.secrets.meta_token
    r = await post_gh(intake, github_alert(secret=leaked), delivery="d-1")
    assert r.json()["outcome"] == "started"
    assert (await post_gh(intake, github_alert(secret=leaked), delivery="d-1")).json()[
        "outcome"
    ] == "duplicate"
    r = await post_gh(intake, github_alert("publicly_leaked", secret=leaked), delivery="d-2")
    assert r.json()["outcome"] == "joined"
    await intake.settle()
    [(playbook, params, _)] = intake.starter.starts
    assert playbook == "leaked_secret" and params["leaked"] == "token"
    assert params["leaked_token_path"] == intake.env.settings.meta.token_path
    assert params["source"] == "github:secret_scanning_alert:42" and params["initiator"] == "intake:github"
    text = (intake.env.settings.intake.state_dir / "audit.jsonl").read_text()
    assert leaked not in text


async def test_github_app_secret_and_unmanaged_values(intake: Harness) -> None:
    r = await post_gh(intake, github_alert(number=7, secret=intake.env.secrets.app_secret))
    assert r.json()["outcome"] == "started"
    r = await post_gh(intake, github_alert(number=8, secret="EAAGsomeoneelsestoken"))
    assert r.json()["outcome"] == "recorded"
    r = await post_gh(intake, github_alert(number=9))  # GitHub's own webhook: no value, starts on the type
    assert r.json()["outcome"] == "started"
    await intake.settle()
    assert [s[1]["leaked"] for s in intake.starter.starts] == ["app_secret", "token"]


@pytest.mark.parametrize(
    ("event", "delivery", "status", "error"),
    [
        ("push", "d-x", 400, "unsupported_event"),
        ("secret_scanning_alert", "", 400, "missing_delivery_id"),
        ("secret_scanning_alert", "../etc/passwd", 400, "missing_delivery_id"),
    ],
)
async def test_github_bad_events(intake: Harness, event, delivery, status, error) -> None:
    body = dumps(github_alert(secret=intake.env.secrets.meta_token))
    headers = github_headers(intake.env.secrets.github_secret, body, "placeholder", event)
    headers["X-GitHub-Delivery"] = delivery
    r = await intake.client.post("/alerts/github", content=body, headers=headers)
    assert (r.status_code, r.json()["error"]) == (status, error)
    assert intake.starter.starts == []


async def test_github_ping_and_wrong_secret(intake: Harness) -> None:
    assert (await post_gh(intake, {"zen": "hi", "hook_id": 1}, event="ping")).json()["outcome"] == "recorded"
    r = await post_gh(intake, github_alert(secret=intake.env.secrets.meta_token), secret="not-the-secret")
    assert r.status_code == 401


# --- Grafana ------------------------------------------------------------------------------------


async def test_grafana_signed_with_and_without_timestamp(intake: Harness) -> None:
    secret = intake.env.secrets.grafana_secret
    body = dumps(
        grafana_notification(
            playbook="account-takeover",
            group="TakeoverSuspected",
            extra_labels={"phone_number_id": "1100000001"},
        )
    )
    r = await intake.client.post(
        "/alerts/grafana", content=body, headers=grafana_headers(secret, body, int(T0))
    )
    assert r.json()["outcome"] == "started"
    r = await intake.client.post("/alerts/grafana", content=body, headers=grafana_headers(secret, body, None))
    # Verified without a timestamp too; the same notification signed again is the same event.
    assert (r.status_code, r.json()["outcome"]) == (200, "duplicate")
    stale = grafana_headers(secret, body, int(T0) - 301)
    r = await intake.client.post("/alerts/grafana", content=body, headers=stale)
    assert r.status_code == 401
    await intake.settle()
    [(playbook, params, _)] = intake.starter.starts
    assert playbook == "account_takeover" and params["phone_number_ids"] == ["1100000001"]


# --- audit, metrics, health ---------------------------------------------------------------------


async def test_audit_and_metrics_carry_no_secret(intake: Harness) -> None:
    s = intake.env.secrets
    await post_am(intake, am_notification())
    await post_am(intake, am_notification(), token="guess")
    await post_gh(intake, github_alert(secret=s.meta_token))
    await post_meta(intake, meta_delivery(template_change()), secret=s.app_secret)
    await intake.settle()
    records = audit(intake)
    assert {"at", "source", "delivery_id", "outcome", "body_sha256", "incident_key", "run_id"} <= set(
        records[0]
    )
    assert [r["outcome"] for r in records if r["source"] == "alertmanager"] == [
        "started",
        "rejected-signature",
    ]
    started = [r for r in records if r["outcome"] == "run-started"]
    assert len(started) == 3 and all(r["run_id"] for r in started)
    everything = (intake.env.settings.intake.state_dir / "audit.jsonl").read_text()
    everything += (await intake.client.get("/metrics")).text
    for secret in s.all():
        assert secret not in everything
    assert "guess" not in everything
    assert (await intake.client.get("/healthz")).json() == {"status": "ok"}
    assert (await intake.client.get("/nope")).status_code == 404
    assert (await intake.client.get("/alerts/alertmanager")).status_code == 405


async def test_missing_secret_in_vault_is_a_rejection(intake: Harness) -> None:
    await intake.env.vault.destroy_versions(intake.env.settings.intake.alertmanager_token_path, [1])
    intake.clock.advance(10)
    r = await post_am(intake, am_notification())
    assert r.status_code == 401 and intake.starter.starts == []
    assert audit(intake)[-1]["verification"] == "failed:no-secret"


async def test_error_answers_name_fields_not_sender_chosen_keys(intake: Harness) -> None:
    payload = am_notification()
    payload["alerts"][0]["labels"]["+15551234567"] = 5  # a label value must be a string
    r = await post_am(intake, payload)
    assert r.status_code == 422 and "alerts" in r.json()["message"]
    assert "5551234567" not in r.text
    assert "5551234567" not in (intake.env.settings.intake.state_dir / "audit.jsonl").read_text()
