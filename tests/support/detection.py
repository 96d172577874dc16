"""detection/ as data: its alerting rules, their promtool test cases, and the system tools that check them.

The tests in tests/detection read the shipped files through these helpers, so what they check is what
Prometheus and Alertmanager load.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DETECTION = ROOT / "detection"
RULES_DIR = DETECTION / "rules"
TESTS_DIR = DETECTION / "tests"
RUNBOOKS = ROOT / "runbooks"
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def seconds(duration: str) -> int:
    """A Prometheus duration such as '1h5m' or '0s' in seconds (the forms these files use)."""
    m = _DURATION.match(duration)
    if not duration or not m:
        raise ValueError(f"unsupported duration {duration!r}")
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


@dataclass
class Alert:
    """One alerting rule of detection/rules."""

    name: str
    file: Path
    expr: str
    for_s: int
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass
class Case:
    """One `alert_rule_test` entry of a promtool test group."""

    file: Path
    group: str
    rule_files: list[Path]
    interval_s: int
    eval_s: int
    alertname: str
    expected: list[dict[str, Any]] = field(default_factory=list)


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def test_files() -> list[Path]:
    return sorted(TESTS_DIR.glob("*.yml"))


def load_alerts() -> list[Alert]:
    alerts = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts.append(
                        Alert(
                            rule["alert"],
                            path,
                            rule["expr"],
                            seconds(rule.get("for", "0s")),
                            dict(rule.get("labels") or {}),
                            dict(rule.get("annotations") or {}),
                        )
                    )
    return alerts


def recording_rules() -> list[str]:
    return [
        rule["record"]
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]


def load_cases() -> list[Case]:
    cases = []
    for path in test_files():
        doc = yaml.safe_load(path.read_text())
        files = [(path.parent / f).resolve() for f in doc["rule_files"]]
        for group in doc["tests"]:
            interval = seconds(group.get("interval", doc.get("evaluation_interval", "1m")))
            for case in group.get("alert_rule_test", []):
                cases.append(
                    Case(
                        path,
                        group.get("name", "?"),
                        files,
                        interval,
                        seconds(case["eval_time"]),
                        case["alertname"],
                        list(case.get("exp_alerts") or []),
                    )
                )
    return cases


def tool(name: str, package: str) -> str:
    """The path of a system tool installed by scripts/sysdeps.sh: fails under CI=true, skips locally."""
    found = shutil.which(name)
    if found:
        return found
    why = f"{name} is not installed (run scripts/sysdeps.sh, or apt-get install {package})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(why)
    pytest.skip(why)


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors of a Markdown text (lower case, punctuation dropped, spaces to '-')."""
    found = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            found.add(text.replace(" ", "-"))
    return found
