"""Detection drills (issue 14.5): the scenario files, the numbered webhooks, and how the drill finds the
moment the intake received the rule's alert in the intake's own audit log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from waguard.drills.behaviour import numbered, received_at
from waguard.drills.report import missed_objectives
from waguard.drills.scenario import Scenario, load_scenarios
from waguard.intake.audit import stamp

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = load_scenarios(ROOT / "runbooks" / "drills")


def shipped_alerts() -> dict[str, dict]:
    rules = {}
    for path in (ROOT / "detection" / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.update({r["alert"]: r for r in group["rules"] if "alert" in r})
    return rules


BEHAVIOURS = {n: s for n, s in SCENARIOS.items() if s.behaviour is not None}


def test_the_four_detection_drills_exist() -> None:
    assert {n: s.behaviour.alert for n, s in BEHAVIOURS.items()}.items() >= {
        "leaked-token-spam": "WabaSpamRateLimited",
        "template-spike": "WabaTemplateSubmissionSpike",
        "forged-signature-storm": "WebhookSignatureFailuresSpike",
        "twostep-reset-unlisted": "WabaTwoStepResetRequested",
    }.items()


@pytest.mark.parametrize("name", sorted(BEHAVIOURS))
def test_each_behaviour_waits_for_a_shipped_rule_that_starts_its_playbook(name: str) -> None:
    """No drill-only rule: the alert is one detection/rules ships, and its playbook label is the scenario's."""
    scenario = BEHAVIOURS[name]
    rule = shipped_alerts().get(scenario.behaviour.alert)
    assert rule is not None, f"{scenario.behaviour.alert} is not a shipped rule"
    assert rule["labels"].get("playbook") == scenario.playbook


def test_a_scenario_has_exactly_one_trigger_and_only_a_behaviour_may_start_nothing() -> None:
    base = SCENARIOS["template-spike"].model_dump(exclude_none=True)
    signal = SCENARIOS["phishing-template-flagged"].model_dump()["signal"]
    with pytest.raises(ValueError, match="exactly one"):
        Scenario.model_validate({**base, "signal": signal})
    with pytest.raises(ValueError, match="exactly one"):
        Scenario.model_validate({k: v for k, v in base.items() if k != "behaviour"})
    with pytest.raises(ValueError, match="without a playbook"):
        Scenario.model_validate({**{k: v for k, v in base.items() if k not in ("behaviour", "playbook")},
                                 "signal": signal})


def test_each_delivery_differs_so_the_intake_counts_every_one() -> None:
    payload = SCENARIOS["leaked-token-spam"].behaviour.webhooks[0].payload
    one, two = numbered(payload, 1, 1_800_000_000), numbered(payload, 2, 1_800_000_001)
    assert one != two and one["entry"][0]["time"] == 1_800_000_000
    ids = [s["id"] for s in one["entry"][0]["changes"][0]["value"]["statuses"]]
    assert ids == ["wamid.drill-spam-1-1", "wamid.drill-spam-1-2"]
    assert "{n}" in json.dumps(payload)  # the scenario itself is untouched


def _audit(path: Path, *records: dict) -> None:
    path.write_text("".join(json.dumps({"status": 200, **r}) + "\n" for r in records))


def test_received_is_the_intakes_record_of_this_alert_not_an_earlier_or_resolved_one(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    fired = 1_800_000_100.0
    _audit(audit,
           {"at": stamp(fired - 60), "source": "alertmanager", "outcome": "started",
            "incident_key": "alertmanager:WabaTwoStepResetRequested:aaaa"},          # an earlier drill's
           {"at": stamp(fired + 1), "source": "alertmanager", "outcome": "recorded",
            "note": "the group resolved; recorded, not acted on"},                   # a resolve
           {"at": stamp(fired + 2), "source": "meta", "outcome": "recorded"},
           {"at": stamp(fired + 3), "source": "alertmanager", "outcome": "started",
            "incident_key": "alertmanager:WabaSpamRateLimited:bbbb"},                 # another alert
           {"at": stamp(fired + 4), "source": "alertmanager", "outcome": "started",
            "incident_key": "alertmanager:WabaTwoStepResetRequested:cccc"})
    assert received_at(audit, "WabaTwoStepResetRequested", fired) == pytest.approx(fired + 4, abs=0.01)
    assert received_at(audit, "WabaSendVolumeSpike", fired) is None
    # An alert without a playbook is recorded (nothing starts), with its own note.
    _audit(audit, {"at": stamp(fired + 30), "source": "alertmanager", "outcome": "recorded",
                   "note": "no firing alert carries the playbook label"})
    assert received_at(audit, "WebhookSignatureFailuresSpike", fired) == pytest.approx(fired + 30, abs=0.01)
    assert received_at(tmp_path / "none.jsonl", "X", fired) is None


def test_objectives_from_the_anomaly_and_a_storm_has_only_the_alert_objective() -> None:
    goals = SCENARIOS["twostep-reset-unlisted"].objectives.model_dump()
    result = {"detected_s": 950.0, "detection_s": 951.0, "time_to_contain_s": 980.0}
    assert missed_objectives(result, goals) == ["detection 951.00 s > 930 s", "anomaly to alert 950.00 s > 900 s"]
    storm = SCENARIOS["forged-signature-storm"].objectives.model_dump()
    assert missed_objectives({"detected_s": 400.0, "detection_s": None, "time_to_contain_s": None}, storm) == []
    assert missed_objectives({"detected_s": None}, storm) == ["anomaly to alert not measured (goal ≤ 900 s)"]


async def test_a_detection_drill_without_prometheus_fails_at_once_saying_what_is_missing() -> None:
    from waguard.drills.behaviour import detection_running
    from waguard.local.processes import free_port

    nothing = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RuntimeError, match="Prometheus is not running .*sysdeps"):
        await detection_running(nothing, nothing)
