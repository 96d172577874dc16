"""`waguard doctor` (issue 15 item 2) on the real local stack: every check passes on a well set-up stack
while Meta sees only GETs and Slack gets no message; then, for each check, a misconfigured variant makes
exactly that check fail with its fix. Variants change settings (what a responder would get wrong) or
the stack's state, and put the state back."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import SecretStr

from tests.fixtures.stack import ROOT
from waguard.local.identities import identity_dir
from waguard.local.processes import ServedApp, free_port
from waguard.meta.client import GraphClient
from waguard.operate.checks import Check
from waguard.operate.doctor import Doctor, render
from waguard.settings import Settings
from waguard.vault.client import VaultClient

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_stack")]
WABA = "3000000001"
ADMIN_SYSTEM_USER = "7000000001"


async def diagnose(
    settings: Settings, *, identities: Path | None = None, project: Path = ROOT
) -> list[Check]:
    return await Doctor(settings, identities=identities or identity_dir(settings), project=project).run()


def verdict(results: list[Check], name: str) -> Check:
    return next(c for c in results if c.name == name)


def assert_fails(results: list[Check], name: str, fix: str) -> Check:
    check = verdict(results, name)
    assert not check.ok, check
    assert fix in check.fix, check
    return check


def variant(settings: Settings, part: str, **changes: object) -> Settings:
    section = getattr(settings, part)
    return settings.model_copy(update={part: section.model_copy(update=changes)})


async def operator(settings: Settings) -> VaultClient:
    """The test's own Vault access (root): set-up and read-backs only, never what the doctor uses."""
    vault = VaultClient.from_settings(settings.vault)
    await vault.check()
    return vault


async def sim_token(local_stack, path: str, **spec: object) -> str:
    """Issue a token in the Meta simulator (as Business Settings would) and keep it at `path`."""
    r = httpx.post(f"{local_stack.meta}/_sim/tokens", json={"user_id": ADMIN_SYSTEM_USER, **spec})
    r.raise_for_status()
    vault = await operator(local_stack.settings)
    await vault.write_secret(path, SecretStr(r.json()["access_token"]))
    vault.close()
    return str(r.json()["id"])


def runbooks_with(tmp_path: Path, change) -> Path:
    """A copy of runbooks/ with businesses.yaml edited by `change`."""
    copy = tmp_path / "runbooks"
    shutil.copytree(ROOT / "runbooks", copy)
    registry = yaml.safe_load((copy / "businesses.yaml").read_text())
    change(registry)
    (copy / "businesses.yaml").write_text(yaml.safe_dump(registry))
    return copy


# ---- all pass, read-only ---------------------------------------------------------------------------


async def test_a_well_set_up_stack_passes_and_the_doctor_only_reads(local_stack) -> None:
    settings = local_stack.settings
    httpx.delete(f"{local_stack.meta}/_sim/requests").raise_for_status()
    httpx.delete(f"{local_stack.slack}/_sim/requests").raise_for_status()
    messages_before = local_stack.slack_messages()

    results = await diagnose(settings)

    assert [c for c in results if not c.ok] == []
    assert {c.name for c in results} == {
        "vault-paths",
        "meta-token-valid",
        "meta-token-expiry",
        "meta-token-scopes",
        "meta-token-wabas",
        "appsecret-proof",
        "webhook-subscriptions",
        "slack-bot",
        "slack-signing-secret",
        "webhook-verify-token",
        "prefect-deployments",
        "intake",
    }
    meta_calls = local_stack.meta_requests()
    assert meta_calls and {c["method"] for c in meta_calls} == {"GET"}, meta_calls
    slack_calls = httpx.get(f"{local_stack.slack}/_sim/requests").json()["requests"]
    assert {c["method"] for c in slack_calls} == {"auth.test", "conversations.info"}
    assert local_stack.slack_messages() == messages_before
    # No secret value reaches the report.
    vault = await operator(settings)
    values = [
        (await vault.read_secret(p)).value.get_secret_value()
        for p in (
            settings.meta.token_path,
            settings.meta.app_secret_path,
            settings.slack.bot_token_path,
            settings.slack.signing_secret_path,
            settings.intake.meta_verify_token_path,
        )
    ]
    vault.close()
    report = render(results, as_json=True) + render(results, as_json=False)
    assert not [v for v in values if v in report]


def test_the_command_exits_0_with_json_for_monitoring(local_stack) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("waguard")), "doctor", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert body["ok"] is True and len(body["checks"]) == 12


# ---- one misconfigured variant per check -----------------------------------------------------------


async def test_a_revoked_token_fails_the_validity_check(local_stack) -> None:
    token_id = await sim_token(local_stack, "meta/doctor-revoked-token")
    httpx.post(f"{local_stack.meta}/_sim/tokens/revoke", json={"token_id": token_id}).raise_for_status()
    results = await diagnose(variant(local_stack.settings, "meta", token_path="meta/doctor-revoked-token"))
    assert_fails(results, "meta-token-valid", "issue a new admin system-user token")


async def test_a_token_expiring_within_the_policy_margin_fails(local_stack) -> None:
    await sim_token(local_stack, "meta/doctor-expiring-token", lifetime_s=3 * 86400)
    results = await diagnose(variant(local_stack.settings, "meta", token_path="meta/doctor-expiring-token"))
    check = assert_fails(results, "meta-token-expiry", "credential-rotation")
    assert "10-day margin" in check.detail
    assert verdict(results, "meta-token-valid").ok


async def test_a_token_without_business_management_fails_the_scope_check(local_stack) -> None:
    await sim_token(
        local_stack,
        "meta/doctor-narrow-token",
        scopes=["whatsapp_business_management", "whatsapp_business_messaging"],
    )
    results = await diagnose(variant(local_stack.settings, "meta", token_path="meta/doctor-narrow-token"))
    check = assert_fails(results, "meta-token-scopes", "business_management")
    assert "lacks business_management" in check.detail


async def test_a_waba_the_token_does_not_reach_fails_the_waba_check(local_stack, tmp_path) -> None:
    def add_waba(registry: dict) -> None:
        registry["businesses"][0]["wabas"].append({"waba_id": "3000000099"})

    settings = local_stack.settings.model_copy(update={"runbooks_dir": runbooks_with(tmp_path, add_waba)})
    results = await diagnose(settings)
    check = assert_fails(results, "meta-token-wabas", "assign the system user")
    assert "3000000099" in check.detail


async def test_a_wrong_app_secret_in_vault_fails_the_proof_check(local_stack) -> None:
    vault = await operator(local_stack.settings)
    # Random, as a real wrong secret is: a run of zeros is inside every timeline's genesis digest, and
    # the canary scan (which searches for every value Vault ever held) would find it there.
    await vault.write_secret("meta/doctor-wrong-app-secret", SecretStr(secrets.token_hex(16)))
    vault.close()
    results = await diagnose(
        variant(local_stack.settings, "meta", app_secret_path="meta/doctor-wrong-app-secret")
    )
    assert_fails(results, "appsecret-proof", "App Dashboard")


async def test_an_override_pointing_elsewhere_fails_the_subscription_check(local_stack) -> None:
    settings = local_stack.settings
    vault = await operator(settings)
    token = (await vault.read_secret(settings.meta.token_path)).value
    secret = (await vault.read_secret(settings.meta.app_secret_path)).value
    vault.close()
    graph = GraphClient.from_settings(settings.meta, token=token, app_secret=secret)
    await graph.subscribe_app(WABA, "https://collector.example.net/hook", SecretStr("their-verify-token"))
    try:
        results = await diagnose(settings)
    finally:
        await graph.subscribe_app(WABA)  # subscribed again without an override, as the stack started
        await graph.aclose()
    check = assert_fails(results, "webhook-subscriptions", f'"{WABA}/subscribed_apps"')
    assert "collector.example.net" in check.detail
    assert verdict(await diagnose(settings), "webhook-subscriptions").ok


async def test_an_intake_with_another_verify_token_fails_the_handshake(local_stack, tmp_path) -> None:
    """A second, real intake that honours another verify token stands at the public URL."""
    from waguard.intake.server import build

    settings = local_stack.settings
    vault = await operator(settings)
    await vault.write_secret("intake/doctor-other-verify-token", SecretStr("not-the-one-in-vault"))
    vault.close()
    other = variant(
        settings,
        "intake",
        meta_verify_token_path="intake/doctor-other-verify-token",
        state_dir=tmp_path / "intake",
    )
    app, other_vault = await asyncio.to_thread(build, other)  # build runs its own event loop
    with ServedApp(app, name="other intake") as served:
        results = await diagnose(variant(settings, "intake", public_url=served.url))
    other_vault.close()
    assert_fails(results, "webhook-verify-token", settings.intake.meta_verify_token_path)
    assert verdict(results, "intake").ok  # it answers; it just is not the intake Meta was told about


async def test_a_bot_not_in_the_escalation_channel_fails_the_slack_check(local_stack) -> None:
    httpx.post(f"{local_stack.slack}/_sim/channels", json={"id": "C0NOTINVITED", "member": False})
    results = await diagnose(variant(local_stack.settings, "slack", escalation_channel="C0NOTINVITED"))
    check = assert_fails(results, "slack-bot", "/invite @waguard in C0NOTINVITED")
    assert "C0NOTINVITED: bot not in the channel" in check.detail


async def test_a_signing_secret_waguard_intake_cannot_read_fails(local_stack) -> None:
    results = await diagnose(
        variant(local_stack.settings, "slack", signing_secret_path="slack/doctor-missing")
    )
    assert_fails(results, "slack-signing-secret", "Signing Secret at slack/doctor-missing")


async def test_a_missing_vault_path_fails_the_vault_check(local_stack, tmp_path) -> None:
    def move_pin(registry: dict) -> None:
        registry["businesses"][0]["wabas"][0]["pin_path"] = "meta/doctor-missing-pin"

    settings = local_stack.settings.model_copy(update={"runbooks_dir": runbooks_with(tmp_path, move_pin)})
    check = assert_fails(await diagnose(settings), "vault-paths", "runbooks/by-hand.md")
    assert "meta/doctor-missing-pin as waguard-playbook" in check.detail


async def test_without_the_role_logins_a_root_token_proves_nothing(local_stack, tmp_path) -> None:
    results = await diagnose(local_stack.settings, identities=tmp_path)  # the settings still hold root
    check = assert_fails(results, "vault-paths", "--identities DIR")
    assert "root" in check.detail
    assert not verdict(results, "meta-token-valid").ok  # nothing was read with the root token either


async def test_a_missing_deployment_fails_the_prefect_check(local_stack, tmp_path) -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    spec["deployments"].append({"name": "doctor-ghost", "entrypoint": "flows/ghost.py:ghost"})
    (tmp_path / "prefect.yaml").write_text(yaml.safe_dump(spec))
    check = assert_fails(
        await diagnose(local_stack.settings, project=tmp_path), "prefect-deployments", "waguard worker"
    )
    assert check.detail == "missing deployments: ghost/doctor-ghost"


async def test_a_deployment_nobody_serves_fails_the_prefect_check(local_stack, tmp_path) -> None:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(local_stack.settings.prefect.api_url) as client:
        flow_id = await client.create_flow_from_name("doctor-orphan")
        await client.create_deployment(flow_id=flow_id, name="doctor-orphan")
        # Another flow's deployment with a playbook's name, which nothing polls: Prefect names are
        # unique per flow only, and the playbook's own deployment is served.
        await client.create_deployment(flow_id=flow_id, name="leaked-secret")
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows/orphan.py").write_text(
        'from prefect import flow\n\n\n@flow(name="doctor-orphan")\ndef orphan() -> None:\n    pass\n'
    )
    (tmp_path / "prefect.yaml").write_text(
        yaml.safe_dump(
            {
                "deployments": [
                    {"name": "leaked-secret", "entrypoint": "flows/leaked_secret.py:leaked_secret"},
                    {"name": "doctor-orphan", "entrypoint": "flows/orphan.py:orphan"},
                ]
            }
        )
    )
    check = assert_fails(
        await diagnose(local_stack.settings, project=tmp_path),
        "prefect-deployments",
        "start (or restart) waguard worker",
    )
    assert check.detail == "no launcher or worker has polled doctor-orphan/doctor-orphan lately (NOT_READY)"


async def test_an_intake_that_is_down_fails_the_intake_check(local_stack) -> None:
    results = await diagnose(
        variant(local_stack.settings, "intake", public_url=f"http://127.0.0.1:{free_port()}")
    )
    assert_fails(results, "intake", "start waguard intake")
    assert not verdict(results, "webhook-verify-token").ok
