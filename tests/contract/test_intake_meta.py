"""Meta's WhatsApp webhooks through the intake: the verify-token handshake, X-Hub-Signature-256 with
the app secret (and the previous one only inside the rotation window), detection of template abuse
and account takeover, one run per WABA and playbook, and fields that are recorded, never refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

import tests.fixtures.intake as fx
from tests.fixtures.intake import Harness, audit, meta_delivery, post_meta, template_change

# The intake room's fixtures (tests/fixtures/intake.py), bound here so pytest finds them.
intake = fx.intake
intake_env = fx.intake_env

pytestmark = pytest.mark.slow


async def test_meta_handshake(intake: Harness) -> None:
    token = intake.env.secrets.meta_verify_token
    ok = await intake.client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": token},
    )
    assert ok.status_code == 200 and ok.text == "1158201444"
    bad = await intake.client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": token + "x"},
    )
    assert bad.status_code == 403 and "1158201444" not in bad.text
    junk = await intake.client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.challenge": "<script>", "hub.verify_token": token},
    )
    assert junk.status_code == 400


async def test_meta_template_abuse_storm_is_one_run(intake: Harness) -> None:
    for i in range(20):
        payload = meta_delivery(
            template_change("FLAGGED" if i % 2 else "PAUSED", name=f"phish_{i % 3}"), time=1 + i
        )
        assert (await post_meta(intake, payload)).status_code == 200
    await post_meta(intake, meta_delivery(template_change("FLAGGED", name="phish_0"), time=1))  # a Meta retry
    await intake.settle()
    [(playbook, params, _)] = intake.starter.starts
    assert playbook == "template_abuse" and params["waba_id"] == "3000000001"
    assert params["template_names"] == ["phish_0"] and not params.get("statuses")


async def test_meta_rejected_for_scam_and_takeover(intake: Harness) -> None:
    r = await post_meta(
        intake,
        meta_delivery(
            template_change("REJECTED", reason="SCAM"),
            ("account_update", {"event": "PARTNER_ADDED", "phone_number": "+15551234567", "requester": "4000000099"}),
        ),
    )
    assert r.json()["outcome"] == "started" and len(r.json()["incidents"]) == 2
    r = await post_meta(intake, meta_delivery(template_change("REJECTED", reason="INVALID_FORMAT"), time=9))
    assert r.json()["outcome"] == "recorded"  # REJECTED for a format problem is not abuse
    await intake.settle()
    by_playbook = {s[0]: s[1] for s in intake.starter.starts}
    assert by_playbook["account_takeover"]["suspect_users"] == ["4000000099"]
    text = (intake.env.settings.intake.state_dir / "audit.jsonl").read_text()
    assert "5551234567" not in text and "+1555" not in json.dumps(by_playbook)


async def test_two_step_events_start_nothing_at_the_intake_the_rules_do(intake: Harness) -> None:
    """PIN_RESET_REQUEST and PIN_CHANGED are counted for detection/rules (which tell waguard's own PIN
    rotation from someone else's) and start no run from the webhook: one start per event, the rule's."""
    for i, event in enumerate(("PIN_RESET_REQUEST", "PIN_CHANGED")):
        r = await post_meta(intake, meta_delivery(
            ("security", {"event": event, "display_phone_number": "+15551234567", "requester": "4000000099"}),
            time=100 + i))
        assert r.status_code == 200 and r.json()["outcome"] == "recorded"
    await intake.settle()
    assert intake.starter.starts == []
    metrics = (await intake.client.get("/metrics")).text
    assert 'waguard_meta_security_events_total{event="PIN_RESET_REQUEST",waba_id="3000000001"} 1.0' in metrics


async def test_meta_fields_not_acted_on_are_recorded_not_refused(intake: Harness) -> None:
    r = await post_meta(
        intake,
        meta_delivery(("messages", {"messages": [{"from": "15551234567", "text": {"body": "hello"}}]})),
    )
    assert r.status_code == 200 and r.json()["outcome"] == "recorded"
    r = await post_meta(intake, {"object": "page", "entry": []})
    assert (r.status_code, r.json()["error"]) == (400, "unsupported_event")


async def test_meta_previous_app_secret_only_inside_rotation_window(intake: Harness) -> None:
    env, s = intake.env, intake.env.secrets
    meta_path = env.settings.meta.app_secret_path
    old_version = (await env.vault.read_secret(meta_path)).version
    await env.vault.write_secret(meta_path, SecretStr("brand-new-app-secret"))
    intake.clock.advance(10)  # past the secret cache's TTL: the rotation is picked up
    payload = meta_delivery(template_change("FLAGGED", name="t1"))
    assert (await post_meta(intake, payload, secret=s.app_secret)).status_code == 401  # no window yet
    until = datetime.fromtimestamp(intake.clock.now, UTC) + timedelta(hours=1)
    await env.vault.write_secret(
        env.settings.intake.rotation_window_path,
        SecretStr(json.dumps({"previous_version": old_version, "until": until.isoformat()})),
    )
    intake.clock.advance(10)
    r = await post_meta(intake, payload, secret=s.app_secret)
    assert r.status_code == 200
    assert audit(intake)[-1]["verification"] == "ok:previous-secret"
    assert (
        await post_meta(intake, meta_delivery(template_change(name="t2")), "brand-new-app-secret")
    ).status_code == 200
    intake.clock.advance(3600 + 10)  # the window closed
    r = await post_meta(intake, meta_delivery(template_change(name="t3"), time=5), secret=s.app_secret)
    assert r.status_code == 401


async def test_a_delivery_signed_with_a_just_rotated_secret_is_accepted_at_once(intake: Harness) -> None:
    """Meta signs with the new app secret from the moment it is rotated; the intake's cached read (TTL
    5 s) must not refuse those deliveries until it expires. A forged signature is still refused."""
    env, s = intake.env, intake.env.secrets
    r = await post_meta(intake, meta_delivery(template_change("FLAGGED", name="r1")), secret=s.app_secret)
    assert r.status_code == 200  # the current secret is now cached
    await env.vault.write_secret(env.settings.meta.app_secret_path, SecretStr("rotated-app-secret"))
    intake.clock.advance(1.5)  # inside the cache's TTL
    r = await post_meta(intake, meta_delivery(template_change("FLAGGED", name="r2"), time=2), "rotated-app-secret")
    assert r.status_code == 200, r.text
    r = await post_meta(intake, meta_delivery(template_change("FLAGGED", name="r3"), time=3), "not-the-secret")
    assert r.status_code == 401
