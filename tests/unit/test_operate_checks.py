"""The doctor's verdicts and the incident summary, as pure functions (the probes are tested on the
local stack in tests/flows/test_doctor.py and test_incident_cli.py)."""

from __future__ import annotations

from waguard.meta.models import AppSubscription, SubscribedApp, TokenInfo
from waguard.operate import checks
from waguard.operate.incidents import summarise
from waguard.playbook.timeline import TimelineEvent

NOW = 1_800_000_000
HOOK = "https://intake.example.com/webhooks/whatsapp"
RUN = "0b0e7d4e-0000-4000-8000-000000000001"


def token(**fields) -> TokenInfo:
    base = {"is_valid": True, "type": "SYSTEM_USER", "expires_at": NOW + 30 * 86400,
            "scopes": list(checks.PLAYBOOK_SCOPES),
            "granular_scopes": [{"scope": "whatsapp_business_management", "target_ids": ["3000000001"]},
                                {"scope": "business_management", "target_ids": ["2000000001"]}]}
    return TokenInfo.model_validate({**base, **fields})


def test_token_verdicts() -> None:
    assert checks.token_expiry(token(), NOW, 10, "meta/t").ok
    soon = checks.token_expiry(token(expires_at=NOW + 86400), NOW, 10, "meta/t")
    assert not soon.ok and "1.0 days" in soon.detail and soon.fix
    assert checks.token_expiry(token(expires_at=0), NOW, 10, "meta/t").ok  # never expires
    assert checks.token_wabas(token(), ["3000000001"], ["2000000001"]).ok
    elsewhere = checks.token_wabas(token(), ["3000000001", "3000000099"], ["2000000001"])
    assert not elsewhere.ok and "3000000099" in elsewhere.detail
    assert checks.token_wabas(token(granular_scopes=[]), ["3000000099"], []).ok  # no targets: everything
    assert not checks.token_scopes(token(scopes=["whatsapp_business_messaging"]), checks.PLAYBOOK_SCOPES).ok
    dead = token(is_valid=False, error={"message": "Session has expired"})
    assert "Session has expired" in checks.token_valid(dead, None, False, "meta/t").detail
    assert not checks.token_scopes(dead, checks.PLAYBOOK_SCOPES).ok  # not checked is not passed


def sub(override: str | None = None, app: str = "1000000001") -> SubscribedApp:
    return SubscribedApp.model_validate({"whatsapp_business_api_data": {"id": app},
                                         "override_callback_uri": override})


def test_subscription_verdicts() -> None:
    hooks = [AppSubscription(object="whatsapp_business_account", callback_url=HOOK)]
    assert checks.subscriptions("1000000001", HOOK, {"3000000001": [sub()]}, hooks).ok
    assert checks.subscriptions("1000000001", HOOK, {"3000000001": [sub(HOOK)]}, "unreadable").ok
    other = checks.subscriptions("1000000001", HOOK, {"3000000001": [sub("https://evil.example/x")]}, hooks)
    assert not other.ok and "evil.example" in other.detail
    missing = checks.subscriptions("1000000001", HOOK, {"3000000001": [sub(app="999")]}, hooks)
    assert not missing.ok and "subscribed_apps" in missing.fix
    wrong_app_hook = checks.subscriptions("1000000001", HOOK, {"3000000001": [sub()]}, [])
    assert not wrong_app_hook.ok and "Callback URL" in wrong_app_hook.fix


def test_every_failure_carries_a_one_line_fix() -> None:
    failures = [
        checks.vault_paths({"playbook": {"meta/x": "absent"}}, None), checks.vault_paths({}, "no login"),
        checks.deployments({"a": None}, None, "u"), checks.deployments({"a": "NOT_READY"}, None, "u"),
        checks.deployments({}, "ConnectError", "u"), checks.intake("u", "ConnectError", None),
        checks.intake("u", None, 503), checks.slack_bot(None, {"C1": False}),
        checks.slack_bot("invalid_auth", {}),
        checks.signing_secret("absent", "slack/s"), checks.verify_handshake("u", None, 403, False, "p"),
        checks.appsecret_proof(None, True, "meta/a"),
    ]
    assert all(not c.ok and c.fix and "\n" not in c.fix for c in failures)


def event(seq: int, step: str, detail: str = "", **data) -> TimelineEvent:
    return TimelineEvent(seq=seq, at=f"2026-11-29T10:00:0{seq}+00:00", step=step, outcome="info",
                         detail=detail, data=data, prev="0" * 64)


def test_an_incident_is_open_until_each_run_that_opened_it_closed() -> None:
    opened = [event(0, "open", f"template_abuse run {RUN} on WABA 3000000001", waba_id="3000000001")]
    s = summarise("INC-1", opened, {})
    assert (s.status, s.runs, s.waba_id, s.playbook) == ("open", [RUN], "3000000001", "template_abuse")
    closed = summarise("INC-1", [*opened, event(1, "close", "cancelled", run=RUN)], {})
    assert closed.status == "closed: cancelled"
    left = summarise("INC-1", opened, {"open_approvals": [{"run": "another-run"}]})
    assert left.runs == [RUN, "another-run"]
