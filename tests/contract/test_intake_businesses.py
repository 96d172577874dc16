"""Many businesses through the intake over HTTP, against the real OpenBao: each Meta webhook is verified
with the secret of the app it is for (every registered app's secret is tried on the raw bytes) and may
name only that app's WABAs; alerts resolve their WABA from the WABA, app and phone-number ids they carry.

The registry is a copy of runbooks/ with a second business (its own app, app secret, token and WABA);
business A keeps the settings' app secret and token paths (a one-entry registry's defaults).
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import SecretStr

import tests.fixtures.intake as fx
from tests.fixtures.intake import (
    RUNBOOKS,
    FakeClock,
    Harness,
    IntakeEnv,
    RecordingRuns,
    am_notification,
    audit,
    dumps,
    github_alert,
    meta_delivery,
    meta_headers,
    post_am,
    post_gh,
    template_change,
)
from waguard.intake.app import create_app
from waguard.intake.starter import RecordingStarter
from waguard.playbook.accounts import rotation_window_path

intake_env = fx.intake_env
pytestmark = pytest.mark.slow

A_WABA, A_NUMBER = "3000000001", "4000000001"
B_BUSINESS, B_APP, B_WABA, B_NUMBER = "2000000002", "1000000002", "3000000101", "4000000101"


def two_businesses(runbooks: Path, prefix: str) -> None:
    """runbooks/ with business B added (its Vault paths under the test's prefix)."""
    shutil.copytree(RUNBOOKS, runbooks)
    registry = yaml.safe_load((runbooks / "businesses.yaml").read_text())
    registry["businesses"].append({
        "business_id": B_BUSINESS, "app_id": B_APP,
        "app_secret_path": f"{prefix}/brand-b/app-secret", "token_path": f"{prefix}/brand-b/token",
        "wabas": [{"waba_id": B_WABA, "phone_number_ids": [B_NUMBER]}]})
    (runbooks / "businesses.yaml").write_text(yaml.safe_dump(registry))


@pytest.fixture
async def two(intake_env: IntakeEnv, tmp_path: Path) -> AsyncIterator[tuple[Harness, str]]:
    """An intake whose registry lists businesses A and B; yields it and B's app secret."""
    two_businesses(tmp_path / "runbooks", intake_env.prefix)
    settings = intake_env.settings
    evidence = settings.evidence.model_copy(update={"secret_prefixes": [f"{intake_env.prefix}/"]})
    env = IntakeEnv(settings.model_copy(update={"runbooks_dir": tmp_path / "runbooks", "evidence": evidence}),
                    intake_env.secrets, intake_env.vault, intake_env.prefix)
    b_secret = secrets.token_hex(16)
    await env.vault.write_secret(f"{env.prefix}/brand-b/app-secret", SecretStr(b_secret))
    await env.vault.write_secret(f"{env.prefix}/brand-b/token", SecretStr("EAAG" + secrets.token_urlsafe(40)))
    clock, starter, runs = FakeClock(), RecordingStarter(), RecordingRuns()
    app = create_app(env.settings, env.vault, starter, clock, runs=runs)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake.test") as c:
        h = Harness(app, env, starter, runs, clock, c)
        yield h, b_secret
        await h.settle()
    await h.service.aclose()


async def post_signed(h: Harness, payload: dict, secret: str) -> httpx.Response:
    body = dumps(payload)
    return await h.client.post("/webhooks/whatsapp", content=body, headers=meta_headers(secret, body))


async def test_a_webhook_signed_with_b_apps_secret_for_b_waba_starts_a_run_on_b(two) -> None:
    h, b_secret = two
    r = await post_signed(h, meta_delivery(template_change("FLAGGED", name="b_phish"), waba=B_WABA), b_secret)
    assert r.status_code == 200 and r.json()["outcome"] == "started", r.text
    await h.settle()
    [(playbook, params, _)] = h.starter.starts
    assert (playbook, params["waba_id"], params["template_names"]) == ("template_abuse", B_WABA, ["b_phish"])
    # Business A's app still verifies A's WABA, as with one business.
    r = await post_signed(h, meta_delivery(template_change("FLAGGED"), waba=A_WABA), h.env.secrets.app_secret)
    assert r.json()["outcome"] == "started"
    await h.settle()
    assert [p["waba_id"] for _, p, _ in h.starter.starts] == [B_WABA, A_WABA]


async def test_a_webhook_signed_with_a_apps_secret_for_b_waba_is_refused(two) -> None:
    h, b_secret = two
    # Also with A's WABA first in the batch: every entry must be the signing app's.
    payload = meta_delivery(template_change("FLAGGED"), waba=B_WABA)
    payload["entry"].insert(0, meta_delivery(template_change("FLAGGED"), waba=A_WABA)["entry"][0])
    r = await post_signed(h, payload, h.env.secrets.app_secret)
    assert r.status_code == 401, r.text
    assert f"WABA {B_WABA} belongs to app {B_APP}" in r.json()["message"]
    last = audit(h)[-1]
    assert (last["status"], last["outcome"], last["verification"]) == (401, "rejected-signature",
                                                                      "failed:wrong-app")
    # And B's secret over A's WABA, the other way round; a secret of no registered app: a mismatch.
    r = await post_signed(h, meta_delivery(template_change("FLAGGED"), waba=A_WABA), b_secret)
    assert r.status_code == 401 and "belongs to app 1000000001" in r.json()["message"]
    r = await post_signed(h, meta_delivery(template_change("FLAGGED"), waba=B_WABA), secrets.token_hex(16))
    assert r.status_code == 401 and audit(h)[-1]["verification"] == "failed:mismatch"
    await h.settle()
    assert h.starter.starts == []
    metrics = (await h.client.get("/metrics")).text
    assert 'reason="wrong-app"' in metrics
    for waba in (A_WABA, B_WABA):  # every registered business's WABA is one waguard protects
        assert f'waguard_known_waba_info{{waba_id="{waba}"}} 1.0' in metrics


async def test_a_waba_no_business_lists_is_recorded_and_starts_nothing(two) -> None:
    h, b_secret = two
    r = await post_signed(h, meta_delivery(template_change("FLAGGED"), waba="3000000999"), b_secret)
    assert r.status_code == 200 and r.json()["outcome"] == "recorded", r.text
    assert "WABA 3000000999 is not in the business registry" in " ".join(r.json()["notes"])
    await h.settle()
    assert h.starter.starts == []


async def test_b_apps_previous_secret_verifies_only_inside_its_own_window(two) -> None:
    h, b_secret = two
    env = h.env
    path = f"{env.prefix}/brand-b/app-secret"
    old_version = (await env.vault.read_secret(path)).version
    await env.vault.write_secret(path, SecretStr(secrets.token_hex(16)))
    h.clock.advance(10)  # past the secret cache's TTL
    payload = meta_delivery(template_change("FLAGGED", name="late"), waba=B_WABA, time=2)
    assert (await post_signed(h, payload, b_secret)).status_code == 401
    # A's window (the settings' path) does not open B's; B's own window does.
    until = datetime.fromtimestamp(h.clock(), UTC) + timedelta(hours=1)
    window = SecretStr(json.dumps({"previous_version": old_version, "until": until.isoformat()}))
    await env.vault.write_secret(env.settings.intake.rotation_window_path, window)
    h.clock.advance(10)
    assert (await post_signed(h, payload, b_secret)).status_code == 401
    await env.vault.write_secret(rotation_window_path(env.settings, B_APP, path), window)
    h.clock.advance(10)
    r = await post_signed(h, payload, b_secret)
    assert r.status_code == 200 and audit(h)[-1]["verification"] == "ok:previous-secret", r.text


async def test_an_alert_naming_a_phone_number_resolves_to_its_waba(two) -> None:
    h, _ = two
    # No waba_id label: the phone number says which WABA (and so which business).
    note = am_notification(group="TakeoverB", playbook="account-takeover",
                           extra_labels={"phone_number_id": B_NUMBER})
    for alert in note["alerts"]:
        del alert["labels"]["waba_id"]
    r = await post_am(h, note)
    assert r.json()["outcome"] == "started", r.text
    # The app id alone names business B, whose only WABA it is.
    note = am_notification(group="LeakB", playbook="leaked-secret", extra_labels={"app_id": B_APP})
    for alert in note["alerts"]:
        del alert["labels"]["waba_id"]
    assert (await post_am(h, note)).json()["outcome"] == "started"
    await h.settle()
    assert [(pb, p["waba_id"]) for pb, p, _ in h.starter.starts] == [("account_takeover", B_WABA),
                                                                     ("leaked_secret", B_WABA)]
    assert h.starter.starts[0][1]["phone_number_ids"] == [B_NUMBER]


async def test_an_alert_whose_ids_disagree_or_name_no_business_starts_nothing(two) -> None:
    h, _ = two
    # A's WABA with B's phone number: which business is meant cannot be told.
    r = await post_am(h, am_notification(group="Mixed", waba=A_WABA, playbook="account-takeover",
                                         extra_labels={"phone_number_id": B_NUMBER}))
    assert r.json()["outcome"] == "recorded"
    assert f"phone number {B_NUMBER} belongs to WABA {B_WABA}" in " ".join(r.json()["notes"])
    # No id at all, with two businesses registered: never the settings' default WABA.
    note = am_notification(group="Nameless")
    for alert in note["alerts"]:
        del alert["labels"]["waba_id"]
    r = await post_am(h, note)
    assert r.json()["outcome"] == "recorded" and "names no WABA" in " ".join(r.json()["notes"])
    await h.settle()
    assert h.starter.starts == []


async def test_a_leaked_b_app_secret_found_by_github_starts_a_run_on_b(two) -> None:
    h, b_secret = two
    r = await post_gh(h, github_alert(number=7, secret=b_secret, secret_type="meta_app_secret"))
    assert r.json()["outcome"] == "started", r.text
    await h.settle()
    [(playbook, params, _)] = h.starter.starts
    assert (playbook, params["leaked"], params["waba_id"]) == ("leaked_secret", "app_secret", B_WABA)
