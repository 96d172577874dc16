"""`waguard drill` as a team runs it: a `waguard up` stack of its own (free ports, its own home), then
the real command, its exit status and its JSON report. Every scenario runs clean, and the takeover
runs again with its flow process killed mid-playbook while Graph and Slack answer 429s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.stack import stack_env
from tests.support.console import log_lines
from waguard.local.processes import wait_until_ok

pytestmark = pytest.mark.slow
WAGUARD = str(Path(sys.executable).with_name("waguard"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    home = tmp_path_factory.mktemp("drill-stack")
    # Nothing of the session's own stack (its Vault identity, its Prefect API) may leak into this one.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("WAGUARD_", "PREFECT_"))}
    env = {**inherited, **stack_env(home)}
    up = subprocess.Popen([WAGUARD, "up"], env=env, stdout=(home / "up.log").open("w"), stderr=subprocess.STDOUT,
                          cwd=Path(__file__).resolve().parents[2])
    try:
        wait_until_ok(f"{env['WAGUARD_PREFECT__API_URL']}/deployments/name/account-takeover/account-takeover",
                      timeout_s=180, service="waguard up")
        wait_until_ok(f"{env['WAGUARD_INTAKE__PUBLIC_URL']}/healthz", timeout_s=30, service="intake")
        yield env, home
    finally:
        up.terminate()
        up.wait(timeout=60)


def drill(env: dict[str, str], home: Path, *args: str) -> tuple[int, dict, str]:
    report = home / f"report-{len(list(home.glob('report-*.json')))}.json"
    done = subprocess.run([WAGUARD, "drill", *args, "--delay", "0.2", "--report", str(report)], env=env,
                          capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[2])
    return done.returncode, json.loads(report.read_text()), done.stdout + done.stderr


# Detection drills wait for the shipped rules' `for:` windows at the shipped intervals (minutes each):
# `make drill` runs them all; here only the fastest, a two-step reset (`for: 0s`, one scrape and one
# evaluation), next to every scenario whose signal is an alert.
DETECTION_IN_CI = "twostep-reset-unlisted"


def ci_scenarios() -> list[str]:
    from waguard.drills.scenario import load_scenarios

    scenarios = load_scenarios(Path(__file__).resolve().parents[2] / "runbooks" / "drills")
    return [n for n, s in scenarios.items() if s.behaviour is None or n == DETECTION_IN_CI]


def test_every_scenario_is_contained_verified_and_leaves_no_secret(stack) -> None:
    env, home = stack
    chosen = ci_scenarios()
    code, report, out = drill(env, home, *chosen)
    assert "using the local stack already running" in out
    # The consoles show progress; log records go to files under the stack home (issue 12 item 7).
    assert log_lines(out) == [] and log_lines((home / "up.log").read_text()) == []
    names = [s["name"] for s in report["scenarios"]]
    assert names == chosen and {"bm-takeover", "github-app-secret-leak", "phishing-template-flagged",
                                 DETECTION_IN_CI} <= set(names), out
    for s in report["scenarios"]:
        assert s["contained"] and s["verified"], (s["name"], s["status"], s["error"], s["checks"])
        if s["playbook"] != "credential-rotation":  # the scheduled rotation asks no one
            assert 0 < s["approval_wait_s"] < s["time_to_contain_s"]
        assert s["steps"][0]["name"] == "open" and s["steps"][-1] == {**s["steps"][-1], "name": "close",
                                                                      "outcome": "done"}
    assert report["canary_hits"] == 0 and report["canary"]["places"] > 50 and report["canary"]["secrets"] >= 10
    # The detection drill: the Meta webhook alone, the shipped rule's alert reaching the intake, all timed
    # from the anomaly (the webhook), in order.
    [detected] = [s for s in report["scenarios"] if s["name"] == DETECTION_IN_CI]
    marks = detected["marks"]
    assert marks["anomaly"] < marks["alert_fired"] <= marks["alert_received"] < marks["run_started"] < marks["contained"]
    assert 0 < detected["detected_s"] < detected["detection_s"] < detected["time_to_contain_s"]
    assert detected["behaviour"]["answers"] == {"200": 1}
    # The HTML report beside the others draws every scenario (the browser test: test_drill_html.py).
    page = (home / "report-0.html").read_text()
    assert all(f'data-scenario="{name}"' in page for name in names)
    assert code == 0 and report["passed"]
    assert "| bm-takeover | account-takeover |" in Path(home / "report-0.md").read_text()
    # ... and the same Markdown as a Prefect artifact, made by the drill-report flow run.
    import httpx

    found = httpx.post(f"{env['WAGUARD_PREFECT__API_URL']}/artifacts/filter",
                       json={"artifacts": {"key": {"any_": ["game-day-drill"]}}}).json()
    assert found and "| bm-takeover | account-takeover |" in found[0]["data"]


def test_a_killed_flow_resumes_without_repeating_a_destructive_call(stack) -> None:
    env, home = stack
    code, report, out = drill(env, home, "bm-takeover", "--fault", "kill-flow", "--fault", "graph-429",
                              "--fault", "slack-429")
    [s] = report["scenarios"]
    faults = {f["name"]: f for f in s["faults"]}
    assert faults["kill-flow"]["applied"], faults["kill-flow"]["notes"]
    assert faults["graph-429"]["applied"] and faults["slack-429"]["applied"]
    checks = {c["check"]: c for c in s["checks"]}
    assert checks["no_repeated_destructive_call"]["ok"], checks["no_repeated_destructive_call"]
    assert checks["registration_budget"]["ok"], checks["registration_budget"]
    # The re-run found the approval already given and went on from where the killed run stopped.
    assert [st["outcome"] for st in s["steps"] if st["name"] == "approve-containment"] == ["decided", "already"]
    assert s["contained"] and s["verified"] and code == 0, out
