"""What each alert of detection/rules reaches: Alertmanager's routing (Debian's amtool, `config routes test`)
sends alerts that name a playbook to the playbook receiver and the rest to triage, both to the intake with
its bearer credential file; and the intake's own routing (the shipped runbooks/routing.yaml, through the real
loader) starts exactly the named playbook with the alert's WABA, numbers and templates as parameters.

The alert labels used are the ones promtool's firing cases expect, so they are the labels Prometheus sends.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.support.detection import DETECTION, RUNBOOKS, load_alerts, load_cases, tool
from waguard.intake.routing import ROUTING_FILE, AlertNotification, alert_key, alert_route, load_routing

ALERTS = load_alerts()
FIRING = {c.alertname: c.expected for c in load_cases() if c.expected}
PLAYBOOK_RECEIVER = "waguard-playbooks"
TRIAGE_RECEIVER = "waguard-triage"


def fired_labels(alert) -> list[dict[str, str]]:
    """Full label sets of the alert as promtool's firing case expects it (alertname included)."""
    return [
        {"alertname": alert.name, **{k: str(v) for k, v in e["exp_labels"].items()}}
        for e in FIRING[alert.name]
    ]


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("amtool", "prometheus-alertmanager"), *args],
        capture_output=True,
        text=True,
        cwd=DETECTION,
        timeout=60,
    )


def test_amtool_accepts_the_alertmanager_config() -> None:
    done = amtool("check-config", "alertmanager.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_receiver_posts_to_the_intake_with_the_bearer_credential_file() -> None:
    config = yaml.safe_load((DETECTION / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        (hook,) = receiver["webhook_configs"]
        assert hook["url"].endswith("/alerts/alertmanager")
        assert hook["http_config"]["authorization"]["type"] == "Bearer"
        assert "credentials" not in hook["http_config"]["authorization"]  # never inline
        assert hook["http_config"]["authorization"]["credentials_file"]


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_alertmanager_routes_each_alert_to_its_receiver(alert) -> None:
    expected = PLAYBOOK_RECEIVER if "playbook" in alert.labels else TRIAGE_RECEIVER
    for labels in fired_labels(alert):
        done = amtool(
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.yml",
            f"--verify.receivers={expected}",
            *(f"{k}={v}" for k, v in labels.items()),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip() == expected


def test_a_playbook_label_alertmanager_does_not_know_goes_to_triage() -> None:
    done = amtool(
        "config",
        "routes",
        "test",
        "--config.file=alertmanager.yml",
        f"--verify.receivers={TRIAGE_RECEIVER}",
        "alertname=X",
        "severity=critical",
        "playbook=rm-rf",
    )
    assert done.returncode == 0, done.stdout + done.stderr


def notification(alert, status: str = "firing") -> AlertNotification:
    alerts = fired_labels(alert)
    group = {k: alerts[0][k] for k in ("alertname", "waba_id", "source") if k in alerts[0]}
    return AlertNotification.model_validate(
        {
            "version": "4",
            "status": status,
            "receiver": PLAYBOOK_RECEIVER,
            "groupKey": '{}/{playbook=~"..."}:' + str(group),
            "groupLabels": group,
            "commonLabels": group,
            "alerts": [
                {
                    "status": status,
                    "labels": labels,
                    "annotations": dict(alert.annotations),
                    "startsAt": "2026-11-24T16:20:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": f"{i:016x}",
                }
                for i, labels in enumerate(alerts)
            ],
        }
    )


@pytest.fixture(scope="module")
def routing():
    # The shipped policy, with every playbook policy it names (as the intake loads it at start).
    return load_routing(RUNBOOKS / ROUTING_FILE, RUNBOOKS).alertmanager


@pytest.mark.parametrize("alert", [a for a in ALERTS if "playbook" in a.labels], ids=lambda a: a.name)
def test_the_intake_starts_the_playbook_the_alert_names(alert, routing) -> None:
    note = notification(alert)
    route = alert_route("alertmanager", note, routing)
    (start,) = route.starts
    assert start.playbook == alert.labels["playbook"].replace("-", "_")
    assert start.severity == routing.severities[alert.labels["severity"]]
    assert start.key == alert_key("alertmanager", note)
    labels = fired_labels(alert)
    if any("waba_id" in lab for lab in labels):
        assert start.parameters["waba_id"] == labels[0]["waba_id"]
    if start.playbook == "template_abuse":  # exactly the templates of the burst, never the catalogue
        assert sorted(start.parameters["template_names"]) == sorted(lab["template"] for lab in labels)
    if start.playbook == "account_takeover" and any("phone_number_id" in lab for lab in labels):
        assert start.parameters["phone_number_ids"] == sorted({lab["phone_number_id"] for lab in labels})


@pytest.mark.parametrize("alert", [a for a in ALERTS if "playbook" not in a.labels], ids=lambda a: a.name)
def test_the_intake_records_an_alert_without_a_playbook(alert, routing) -> None:
    route = alert_route("alertmanager", notification(alert), routing)
    assert route.starts == ()
    assert route.notes


@pytest.mark.parametrize("alert", [a for a in ALERTS if "playbook" in a.labels], ids=lambda a: a.name)
def test_the_resolved_alert_closes_its_incident(alert, routing) -> None:
    note = notification(alert, "resolved")
    assert alert_route("alertmanager", note, routing).closes == (alert_key("alertmanager", note),)
