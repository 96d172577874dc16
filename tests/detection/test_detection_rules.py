"""detection/rules pass Debian's promtool (installed by scripts/sysdeps.sh): `check rules` and every unit test
in detection/tests. Read as data, every alert has a firing case, a silent case and (with a `for:`) a case one
evaluation before it fires; every rule carries severity, summary, description and a runbook_url whose section
exists; every metric a rule reads is listed in detection/metrics.md.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict

import pytest

from tests.support.detection import (
    DETECTION,
    ROOT,
    RUNBOOKS,
    anchors,
    load_alerts,
    load_cases,
    recording_rules,
    rule_files,
    tool,
)
from tests.support.detection import (
    test_files as promtool_test_files,
)

ALERTS = load_alerts()
CASES = load_cases()
SEVERITIES = {"critical", "warning", "info"}
PLAYBOOK_LABELS = {"leaked-secret", "template-abuse", "account-takeover"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool", "prometheus"), *args], capture_output=True, text=True, cwd=DETECTION, timeout=120
    )


def test_promtool_checks_every_rule_file() -> None:
    done = promtool("check", "rules", *(str(p) for p in rule_files()))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(rule_files())


def test_promtool_checks_the_prometheus_config() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    # The config loads every shipped rule file.
    assert f"SUCCESS: {len(rule_files())} rule files found" in done.stdout


@pytest.mark.parametrize("path", promtool_test_files(), ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path) -> None:
    done = promtool("test", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_rule_file_is_unit_tested() -> None:
    tested = {f for c in CASES for f in c.rule_files}
    assert {p.resolve() for p in rule_files()} <= tested


def _cases_by_alert():
    by_alert = defaultdict(list)
    for case in CASES:
        by_alert[case.alertname].append(case)
    return by_alert


def test_every_case_names_an_existing_alert_of_its_rule_files() -> None:
    names = {(a.file.resolve(), a.name) for a in ALERTS}
    for case in CASES:
        assert any((f, case.alertname) in names for f in case.rule_files), (
            f"{case.file.name} [{case.group}] tests {case.alertname}, which none of its rule files defines"
        )


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_every_alert_has_a_firing_and_a_silent_case(alert) -> None:
    cases = _cases_by_alert()[alert.name]
    firing = [c for c in cases if c.expected]
    assert firing, f"{alert.name}: no promtool case where it fires"
    assert [c for c in cases if not c.expected], f"{alert.name}: no promtool case where it stays silent"


@pytest.mark.parametrize("alert", [a for a in ALERTS if a.for_s > 0], ids=lambda a: a.name)
def test_an_alert_with_for_is_silent_one_evaluation_before_it_fires(alert) -> None:
    """promtool proves the expectations; this proves the 'one evaluation before' expectation is written."""
    cases = _cases_by_alert()[alert.name]
    for fires in (c for c in cases if c.expected):
        earlier = [
            c for c in cases if c.file == fires.file and c.group == fires.group and c.eval_s < fires.eval_s
        ]
        if any(c.expected for c in earlier):
            continue  # not the first firing case of its group
        assert any(c.eval_s == fires.eval_s - fires.interval_s and not c.expected for c in earlier), (
            f"{alert.name}: {fires.file.name} [{fires.group}] fires at {fires.eval_s}s "
            f"but has no silent case one evaluation ({fires.interval_s}s) before"
        )


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_every_firing_case_expects_the_rule_labels_and_all_annotations(alert) -> None:
    for case in _cases_by_alert()[alert.name]:
        for expected in case.expected:
            labels = expected.get("exp_labels") or {}
            assert {k: labels.get(k) for k in alert.labels} == alert.labels, case.group
            assert set(expected.get("exp_annotations") or {}) == set(alert.annotations), case.group


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_every_alert_carries_severity_playbook_and_annotations(alert) -> None:
    assert alert.labels.get("severity") in SEVERITIES
    assert alert.labels.get("playbook", "leaked-secret") in PLAYBOOK_LABELS
    assert {"summary", "description", "runbook_url"} <= set(alert.annotations)


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_runbook_url_points_at_a_section_for_the_alert(alert) -> None:
    path, _, anchor = alert.annotations["runbook_url"].partition("#")
    runbook = ROOT / path
    assert runbook.parent == RUNBOOKS and runbook.exists(), f"{alert.name}: no runbook {path}"
    assert anchor == alert.name.lower(), f"{alert.name}: the anchor should be the alert name"
    assert anchor in anchors(runbook.read_text()), f"{alert.name}: {path} has no section '{alert.name}'"
    if "playbook" in alert.labels:  # an alert that starts a playbook points at that playbook's runbook
        assert runbook.name == f"{alert.labels['playbook']}.md"


def test_every_metric_a_rule_reads_is_listed_in_metrics_md() -> None:
    listed = set(re.findall(r"^\| `([a-z_:]+)` \|", (DETECTION / "metrics.md").read_text(), re.M))
    recorded = set(recording_rules())
    read = set()
    for path in rule_files():
        read |= set(re.findall(r"(?<![\w:])(waguard_[a-z_]+)", path.read_text()))
    assert read, "no metric found in the rules"
    assert read <= listed, f"not in detection/metrics.md: {sorted(read - listed)}"
    assert all(r.startswith("waguard:") for r in recorded), (
        "recording rules are named level:metric:operations"
    )
