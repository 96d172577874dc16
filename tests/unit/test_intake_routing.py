"""Routing policy: the shipped file validates, every invalid sample fails naming the file, and the
pure decisions for Alertmanager/Grafana and GitHub route as the policy says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waguard.errors import ConfigError
from waguard.intake.params import INCIDENT_ID_MAX, PARAMETER_MODELS, build_parameters, incident_id, worst
from waguard.intake.routing import (
    ROUTING_FILE,
    AlertNotification,
    AlertRouting,
    CredentialMatch,
    GitHubRouting,
    RoutingPolicy,
    SecretScanningDelivery,
    alert_route,
    github_route,
    load_routing,
    playbook_named,
)

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "runbooks"
INVALID = sorted((ROOT / "tests/samples/routing_invalid").glob("*.yaml"))


def test_shipped_routing_is_valid_and_its_playbooks_have_policies() -> None:
    policy = load_routing(RUNBOOKS / ROUTING_FILE, RUNBOOKS)
    assert policy.playbooks() == {"leaked_secret", "template_abuse", "account_takeover"}


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_routing_samples_are_refused(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_routing(path)
    assert str(path) in str(info.value)


def test_there_are_invalid_samples() -> None:
    assert len(INVALID) >= 8


def test_a_playbook_without_a_valid_policy_is_refused_at_start(tmp_path: Path) -> None:
    shutil.copy(RUNBOOKS / ROUTING_FILE, tmp_path / ROUTING_FILE)
    for p in RUNBOOKS.glob("*.policy.yaml"):
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "account-takeover.policy.yaml").unlink()
    with pytest.raises(ConfigError, match="account-takeover.policy.yaml"):
        load_routing(tmp_path / ROUTING_FILE, tmp_path)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_routing(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("version: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_routing(tmp_path / "bad.yaml")


# --- Alertmanager / Grafana ---------------------------------------------------------------------

CFG = AlertRouting.model_validate(
    {
        "playbooks": {
            "template_abuse": {"labels": {"waba_id": "waba_id", "template_names": "template"}},
            "leaked_secret": {"parameters": {"leaked": "app_secret"}, "severity": "SEV1"},
        }
    }
)


def note(
    status: str = "firing", alerts: list[dict] | None = None, group_key: str = '{}:{alertname="A"}', **kw
) -> AlertNotification:
    alerts = (
        alerts
        if alerts is not None
        else [
            {
                "status": status,
                "labels": {
                    "alertname": "A",
                    "playbook": "template-abuse",
                    "waba_id": "42",
                    "template": "t1",
                    "severity": "warning",
                },
            }
        ]
    )
    return AlertNotification.model_validate(
        {
            "version": "4",
            "groupKey": group_key,
            "status": status,
            "alerts": alerts,
            "groupLabels": {"alertname": "A"},
            **kw,
        }
    )


def alert(playbook: str | None, status: str = "firing", **labels: str) -> dict:
    base = {"alertname": "A", **labels}
    if playbook is not None:
        base["playbook"] = playbook
    return {"status": status, "labels": base}


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        (
            [alert("template-abuse", waba_id="42", template="t1", severity="warning")],
            [("template_abuse", "SEV2", {"waba_id": "42", "template_names": ["t1"]})],
        ),
        (
            [
                alert("template_abuse", template="t2", severity="critical"),
                alert("template-abuse", template="t1"),
                alert("template-abuse", template="t1", severity="info"),
            ],
            [("template_abuse", "SEV1", {"template_names": ["t1", "t2"]})],
        ),  # worst severity, union
        ([alert("leaked-secret", severity="info")], [("leaked_secret", "SEV1", {"leaked": "app_secret"})]),
        (
            [alert("template-abuse"), alert("leaked-secret")],
            [("leaked_secret", "SEV1", {"leaked": "app_secret"}), ("template_abuse", "SEV2", {})],
        ),
        ([alert("account-takeover")], []),  # not listed for this source
        ([alert("rm -rf")], []),
        ([alert(None)], []),
        ([alert("template-abuse", status="resolved")], []),  # a resolved alert inside a firing group
        ([alert("template-abuse", waba_id="not-digits")], []),  # invalid parameter: recorded, not started
    ],
)
def test_alert_route(alerts, expected) -> None:
    route = alert_route("alertmanager", note(alerts=alerts), CFG)
    got = [(s.playbook, s.severity, s.parameters) for s in route.starts]
    assert got == expected
    if not expected:
        assert route.notes


def test_alert_key_is_per_group_and_source() -> None:
    a = alert_route("alertmanager", note(), CFG).starts[0].key
    b = alert_route("alertmanager", note(group_key='{}:{alertname="B"}'), CFG).starts[0].key
    g = alert_route("grafana", note(orgId=3), CFG).starts[0].key
    assert a != b and a.startswith("alertmanager:A:") and g.startswith("grafana:3:A:")
    assert alert_route("alertmanager", note(), CFG).starts[0].key == a


def test_resolved_group_closes_and_starts_nothing() -> None:
    route = alert_route("alertmanager", note("resolved"), CFG)
    assert route.starts == () and route.closes == (alert_route("alertmanager", note(), CFG).starts[0].key,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("leaked-secret", "leaked_secret"),
        ("Template_Abuse", "template_abuse"),
        (" account-takeover ", "account_takeover"),
        ("other", None),
        ("", None),
        (None, None),
    ],
)
def test_playbook_named(value, expected) -> None:
    assert playbook_named(value) == expected


# --- GitHub -------------------------------------------------------------------------------------

GH = GitHubRouting(meta_secret_types={"facebook_access_token": "token"})


def gh(action: str = "created", secret: str | None = None, secret_type: str = "facebook_access_token"):
    alert = {"number": 42, "secret_type": secret_type}
    if secret is not None:
        alert["secret"] = secret
    return SecretScanningDelivery.model_validate({"action": action, "alert": alert, "repository": {"id": 7}})


TOKEN = CredentialMatch("token", "meta/system-user-token")
APP = CredentialMatch("app_secret", "meta/app-secret")


@pytest.mark.parametrize(
    ("delivery", "cfg", "match", "expected"),
    [
        (gh(secret="x"), GH, TOKEN, {"leaked": "token", "leaked_token_path": "meta/system-user-token"}),
        (gh("publicly_leaked", secret="x"), GH, APP, {"leaked": "app_secret", "leaked_token_path": None}),
        (gh("reopened", secret="x"), GH, APP, {"leaked": "app_secret", "leaked_token_path": None}),
        (gh(secret="x"), GH, None, None),  # not ours
        (gh(), GH, None, None),  # no value, policy says record
        (gh(), GH.model_copy(update={"when_value_absent": "start"}), None, {"leaked": "token"}),
        (gh(secret_type="aws_access_key"), GH.model_copy(update={"when_value_absent": "start"}), None, None),
        (gh("assigned", secret="x"), GH, TOKEN, None),
        (gh("validated", secret="x"), GH, TOKEN, None),
    ],
)
def test_github_route(delivery, cfg, match, expected) -> None:
    route = github_route(delivery, cfg, match)
    if expected is None:
        assert route.starts == () and route.notes
    else:
        [start] = route.starts
        assert (start.playbook, start.key, start.severity, start.parameters) == (
            "leaked_secret",
            "github:7:42",
            "SEV1",
            expected,
        )
        assert start.source == "github:secret_scanning_alert:42"


def test_github_resolved_closes() -> None:
    assert github_route(gh("resolved"), GH, None).closes == ("github:7:42",)


def test_github_secret_never_in_repr() -> None:
    assert "hunter2" not in repr(gh(secret="hunter2"))


# --- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("github:7:42:leaked_secret:1", "github:7:42:leaked_secret:1"),
        ("alertmanager:A b/c:1", "alertmanager:A-b-c:1"),
        ("%%%", "incident"),
    ],
)
def test_incident_id(key, expected) -> None:
    assert incident_id(key) == expected


@given(st.text(max_size=400))
def test_incident_id_is_always_safe(key: str) -> None:
    ident = incident_id(key)
    assert 1 <= len(ident) <= INCIDENT_ID_MAX
    assert all(c.isascii() and (c.isalnum() or c in "._:-") for c in ident)


def test_long_keys_stay_distinct() -> None:
    a, b = incident_id("x" * 200 + "a"), incident_id("x" * 200 + "b")
    assert a != b and len(a) == INCIDENT_ID_MAX


def test_build_parameters_matches_the_flow_signatures() -> None:
    """The intake sends every parameter the flow takes (none left to the deployment's Quick-run values)."""
    import inspect

    from flows.account_takeover import account_takeover
    from flows.leaked_secret import leaked_secret
    from flows.template_abuse import template_abuse

    common = {"incident_id": "i", "severity": "SEV2", "initiator": "intake:meta", "source": "s"}
    sent = build_parameters("account_takeover", common)
    assert sent == {**PARAMETER_MODELS["account_takeover"]().model_dump(), **common}  # every one, explicitly
    for playbook, flow in (("account_takeover", account_takeover), ("template_abuse", template_abuse),
                           ("leaked_secret", leaked_secret)):
        sent = build_parameters(playbook, {**common, "waba_id": None})
        assert set(sent) == set(inspect.signature(flow.fn).parameters), playbook
        assert flow.validate_parameters(sent) == sent, playbook   # Prefect takes it as sent (None included)
    assert build_parameters("leaked_secret", {**common, "leaked": "token"})["leaked"] == "token"
    with pytest.raises(ValueError):
        build_parameters("leaked_secret", {**common, "unknown": 1})


def test_worst() -> None:
    assert worst(["SEV3", "SEV1", "SEV2"], "SEV3") == "SEV1" and worst([], "SEV2") == "SEV2"


def test_routing_defaults_are_complete() -> None:
    policy = RoutingPolicy(version=1)
    assert policy.meta.template_abuse and policy.github.when_value_absent == "record"
