"""The drills' pure parts: scenario files, seed merging, scoring, Slack thread reading, request records."""

from pathlib import Path

import pytest

from waguard.drills import report
from waguard.drills.faults import mutating_requests
from waguard.drills.responder import approval_requests, asks_for_app_secret_reset, click_body
from waguard.drills.scenario import load_scenarios, select
from waguard.drills.world import _merge
from waguard.errors import ConfigError
from waguard.playbook.timeline import TimelineEvent

DRILLS = Path(__file__).resolve().parents[2] / "runbooks" / "drills"


def ev(seq: int, at: str, step: str, outcome: str, detail: str = "") -> TimelineEvent:
    return TimelineEvent(seq=seq, at=f"2026-11-24T10:00:{at}+00:00", step=step, outcome=outcome, detail=detail,
                         prev="0" * 64)


RUN = [ev(0, "00.000", "open", "started"), ev(1, "00.500", "snapshot-evidence", "done"),
       ev(2, "01.000", "approve-containment", "started"), ev(3, "01.100", "approve-containment", "info"),
       ev(4, "03.000", "approve-containment", "decided", "approved"), ev(5, "03.500", "delete-templates", "done"),
       ev(6, "04.000", "snapshot-evidence", "done"), ev(7, "04.200", "close", "done", "contained")]


def test_the_shipped_scenarios_load_and_cover_every_playbook_and_source() -> None:
    scenarios = load_scenarios(DRILLS)
    assert {s.playbook for s in scenarios.values() if s.playbook} == {
        "leaked-secret", "template-abuse", "account-takeover", "credential-rotation"}
    # The scheduled deployments, each started as its schedule would (issue 16).
    assert {s.start.deployment for s in scenarios.values() if s.start} == {"credential-rotation",
                                                                           "posture-audit"}
    # Alertmanager's alerts come from the real Prometheus in the detection drills (test_drill_behaviour.py).
    assert {"github", "meta"} <= {s.signal.source for s in scenarios.values() if s.signal}
    assert [s.name for s in select(scenarios, ["template-spike"], False)] == ["template-spike"]
    with pytest.raises(ConfigError, match="unknown scenario"):
        select(scenarios, ["nope"], False)
    with pytest.raises(ConfigError, match="--all"):
        select(scenarios, [], False)


def test_a_bad_scenario_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "x-y.yaml").write_text((DRILLS / "template-spike.yaml").read_text() + "surprise: 1\n")
    with pytest.raises(ConfigError, match="surprise"):
        load_scenarios(tmp_path)


def test_merge_adds_items_and_replaces_the_same_identity() -> None:
    seed = {"business_users": [{"id": "1", "name": "a"}],
            "subscribed_apps": [{"waba_id": "3", "app_id": "1", "override_callback_uri": None}]}
    out = _merge(seed, {"business_users": [{"id": "9", "name": "m"}],
                        "subscribed_apps": [{"waba_id": "3", "app_id": "1", "override_callback_uri": "https://x"}]})
    assert [u["id"] for u in out["business_users"]] == ["1", "9"]
    assert out["subscribed_apps"] == [{"waba_id": "3", "app_id": "1", "override_callback_uri": "https://x"}]
    assert seed["business_users"] == [{"id": "1", "name": "a"}]  # the input is not changed


def test_scoring_reads_the_timeline() -> None:
    rows = report.steps(RUN)
    assert [r["name"] for r in rows] == ["open", "snapshot-evidence", "approve-containment", "delete-templates",
                                         "snapshot-evidence", "close"]
    assert rows[2]["outcome"] == "decided" and rows[2]["ended_at"].endswith("03.000+00:00")
    assert report.approval_wait_s(RUN) == 2.0
    assert report.contained_at(RUN) == report._t(RUN[5])   # the delete, not the closing snapshot
    assert report.outcome(RUN) == "contained"
    failed = [*RUN[:5], ev(5, "03.500", "close", "failed", "VerificationFailed")]
    assert report.outcome(failed) == "failed-safe" and report.contained_at(failed) is None
    assert report.outcome(RUN[:3]) == "unfinished"


def test_the_responder_finds_its_runs_approval_buttons_and_the_manual_step() -> None:
    value = '{"run":"r1","step":"approve-containment","nonce":"n1"}'
    actions = {"type": "actions", "block_id": "approval-v1:approve-containment:n1",
               "elements": [{"action_id": "approve", "value": value}, {"action_id": "deny", "value": value}]}
    channels = {"C1": [{"ts": "1", "text": "incident", "blocks": [], "replies": [
        {"ts": "2", "blocks": [actions]},
        {"ts": "3", "text": "*Manual step: reset the app secret* (incident INC-9). Meta has no API for this."}]}]}
    assert approval_requests(channels, "r1") == [("C1", {"run": "r1", "step": "approve-containment", "nonce": "n1",
                                                         "block_id": "approval-v1:approve-containment:n1"})]
    assert approval_requests(channels, "other-run") == []
    assert asks_for_app_secret_reset(channels, "INC-9") and not asks_for_app_secret_reset(channels, "INC-1")
    body = click_body("U0ONCALL", "C1", approval_requests(channels, "r1")[0][1]).decode()
    assert body.startswith("payload=") and "U0ONCALL" in body and "n1" in body


def test_only_successful_destructive_graph_calls_count() -> None:
    records = [{"method": "POST", "path": "/v23.0/4000000001/deregister", "status": 200},
               {"method": "POST", "path": "/v23.0/4000000001/deregister", "status": 429},
               {"method": "GET", "path": "/v23.0/3000000001/message_templates", "status": 200},
               {"method": "DELETE", "path": "/v23.0/3000000001/message_templates", "status": 200},
               {"method": "POST", "path": "/_sim/seed", "status": 200},
               {"method": "POST", "path": "/v23.0/4000000001", "status": 200}]   # a PIN: not destructive
    assert [r["path"] for r in mutating_requests(records)] == ["/v23.0/4000000001/deregister",
                                                               "/v23.0/3000000001/message_templates"]


def test_the_table_and_markdown_show_every_scenario() -> None:
    scenario = {"name": "s1", "playbook": "template-abuse", "status": "contained", "contained": True,
                "verified": True,
                "time_to_contain_s": 3.2, "approval_wait_s": 2.0, "detection_s": 1.1, "run_id": "r",
                "incident_id": "i", "error": None, "faults": [{"name": "graph-429", "notes": []}],
                "checks": [{"check": "templates_absent", "ok": True, "detail": "1 gone"}], "steps": report.steps(RUN)}
    rep = {"started_at": "t", "scenarios": [scenario], "canary_hits": 0,
           "canary": {"places": 3, "secrets": 2, "hits": []}, "passed": True}
    assert "s1" in report.table(rep) and "PASS" in report.table(rep)
    md = report.markdown(rep)
    assert "| s1 | template-abuse | graph-429 | contained | yes | 3.20 |" in md and "delete-templates" in md


def test_the_command_refuses_unknown_names_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    from waguard.cli import main

    assert main(["drill", "--all", "--fault", "meteor"]) == 2
    assert "unknown fault(s) meteor" in capsys.readouterr().err
    assert main(["drill", "nope"]) == 2
    assert "unknown scenario(s) nope" in capsys.readouterr().err


def test_a_repeated_destructive_call_or_a_second_registration_attempt_fails_verification() -> None:
    from waguard.drills.verify import Verifier

    v = Verifier(None, None, None, None)  # type: ignore[arg-type]  # no_repeats reads only what it is given
    delete = {"method": "DELETE", "path": "/v23.0/3000000001/message_templates", "status": 200,
              "query": {"hsm_id": "5000000008", "name": "account_security_notice"}}
    v.state = {"phone_numbers": [{"id": "4000000001", "registration_attempts_in_window": 1}]}
    once, budget = v.no_repeats([delete])
    assert once.ok and budget.ok
    v.state = {"phone_numbers": [{"id": "4000000001", "registration_attempts_in_window": 2}]}
    twice, budget = v.no_repeats([delete, {**delete, "query": {**delete["query"]}}])
    assert not twice.ok and "message_templates" in twice.detail and not budget.ok


def _scenario(name: str, *, contained: bool = True, verified: bool = True, contain_s: float | None = 3.0,
              detect_s: float | None = 1.0) -> dict:
    result = {"name": name, "status": "contained" if contained else "failed-safe", "contained": contained,
              "verified": verified, "time_to_contain_s": contain_s, "detection_s": detect_s}
    result["objectives_missed"] = report.missed_objectives(result, {"time_to_contain_s": 30, "detection_s": 5})
    result["objectives_met"] = not result["objectives_missed"]
    return result


def test_the_verdict_says_containment_and_objectives_and_can_require_them() -> None:
    """Issue 11 item 8: every scenario missed its objectives and the drill printed a bare PASS."""
    slow = {"scenarios": [_scenario("a", contain_s=72.5), _scenario("b", detect_s=None)], "canary_hits": 0}
    ok, sentence = report.verdict(slow)
    assert ok and sentence.startswith("PASS: 2/2 contained and verified; objectives missed in 2")
    assert "a: time to contain 72.50 s > 30 s" in sentence and "b: detection not measured" in sentence
    ok, sentence = report.verdict(slow, require_objectives=True)
    assert not ok and sentence.startswith("FAIL: 2/2 contained and verified; objectives missed in 2")
    fast = {"scenarios": [_scenario("a"), _scenario("b")], "canary_hits": 0}
    met = "PASS: 2/2 contained and verified; objectives met"
    assert report.verdict(fast, require_objectives=True) == (True, met)
    broken = {"scenarios": [_scenario("a", contained=False), _scenario("b", verified=False)],
              "canary_hits": 1}
    ok, sentence = report.verdict(broken)
    assert not ok and "0/2 contained and verified" in sentence
    assert "(not: a (failed-safe), b (contained, not verified))" in sentence
    assert sentence.endswith("1 canary hit(s)")


def test_the_drill_command_fails_missed_objectives_only_when_asked(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """The exit status, through the command: a stack that is 'up' and a runner whose scenarios were slow."""
    from waguard.drills import command, runner
    from waguard.settings import Settings

    slow = {"started_at": "t", "scenarios": [{**_scenario("template-spike", contain_s=99.0), "playbook": "p",
                                               "run_id": "r", "incident_id": "i", "error": None, "faults": [],
                                               "checks": [], "steps": [], "approval_wait_s": 0.0}],
            "canary_hits": 0, "canary": {"places": 1, "secrets": 1, "hits": []}, "duration_s": 12.0}

    class SlowRunner:
        def __init__(self, *_a: object, **_k: object) -> None: ...
        async def run(self, _scenarios: object) -> dict:
            return dict(slow)

    async def no_artifact(_path: Path) -> None: ...

    monkeypatch.setattr(command, "_stack_is_up", lambda _urls: True)
    monkeypatch.setattr(runner, "DrillRunner", SlowRunner)
    monkeypatch.setattr(runner, "publish_artifact", no_artifact)
    settings = Settings(runbooks_dir=DRILLS.parent)
    args = dict(scenarios=["template-spike"], everything=False, faults=[], human=False, delay_s=0)
    assert command.drill(settings, report_path=tmp_path / "r.json", **args) == 0
    assert command.drill(settings, report_path=tmp_path / "r.json", require_objectives=True, **args) == 1
    assert "FAIL: 1/1 contained and verified; objectives missed in 1" in (tmp_path / "r.md").read_text()


def _scheduled_scenario(**change: object) -> dict:
    import yaml

    body = yaml.safe_load((DRILLS / "token-past-90-days.yaml").read_text())
    body.update(change)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(("change", "message"), [
    ({"signal": {"source": "meta", "payload": {}}}, "exactly one of signal"),
    ({"start": None}, "exactly one of signal"),
    ({"playbook": "account-takeover"}, "the scored run is 'credential-rotation'"),
    ({"start": {"deployment": "posture-audit", "then": "account-takeover", "consumer": "meta/x"}},
     "the scored run is 'account-takeover'"),
    ({"start": {"deployment": "credential-rotation"}}, "consumer_no_failed_calls needs start.consumer"),
])
def test_a_scheduled_scenario_names_one_trigger_its_scored_run_and_its_consumer(
        change: dict, message: str) -> None:
    from pydantic import ValidationError

    from waguard.drills.scenario import Scenario

    Scenario.model_validate(_scheduled_scenario())  # the shipped file is valid
    with pytest.raises(ValidationError, match=message):
        Scenario.model_validate(_scheduled_scenario(**change))
