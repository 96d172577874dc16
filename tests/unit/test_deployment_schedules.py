"""prefect.yaml's schedules reach the deployments the launcher and the served runner build."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from waguard.errors import ConfigError
from waguard.local.schedules import deployment_schedules

ROOT = Path(__file__).resolve().parents[2]


def specs() -> dict[str, dict]:  # type: ignore[type-arg]
    return {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}


def test_the_two_hygiene_deployments_are_scheduled_and_the_playbooks_are_not() -> None:
    all_ = specs()
    rotation, audit = deployment_schedules(all_["credential-rotation"]), deployment_schedules(all_["posture-audit"])
    assert rotation and rotation[0].cron == "17 3 * * *" and rotation[0].timezone == "UTC"
    assert audit and audit[0].cron == "7 * * * *"
    for playbook in ("leaked-secret", "template-abuse", "account-takeover"):
        assert deployment_schedules(all_[playbook]) is None


async def test_the_launcher_builds_the_scheduled_deployments_with_their_schedules() -> None:
    from waguard.launcher.launcher import load_deployments

    built = {dep.name: dep for _, _, dep in await load_deployments(ROOT, ROOT / "prefect.yaml")}
    assert [s.schedule.cron for s in built["credential-rotation"].schedules] == ["17 3 * * *"]
    assert [s.schedule.cron for s in built["posture-audit"].schedules] == ["7 * * * *"]


@pytest.mark.parametrize("entry", [{"cron": "* * * * *", "interval": 60}, {}, {"cron": "* * * * *", "tz": "UTC"}])
def test_a_bad_schedule_entry_is_a_config_error(entry: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match="exactly one of cron or interval"):
        deployment_schedules({"name": "x", "schedules": [entry]})
