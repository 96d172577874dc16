"""Each runbook's ordered step list matches the order its flow runs the steps.

The flow's steps are read from its source: `run.snapshot(...)`, `run.approve("name", ...)`,
`run.manual("name", ...)` and `step.<task>(...)` calls (the task's Prefect name), in source order.
"""

import ast
import re
from pathlib import Path

import pytest

from tasks import containment

ROOT = Path(__file__).resolve().parents[2]

PLAYBOOKS = ["leaked_secret", "template_abuse", "account_takeover"]


def flow_steps(playbook: str) -> list[str]:
    tree = ast.parse((ROOT / "flows" / f"{playbook}.py").read_text())
    calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)),
                   key=lambda n: (n.lineno, n.col_offset))
    steps: list[str] = []
    for call in calls:
        owner = call.func.value
        name = call.func.attr
        if isinstance(owner, ast.Name) and owner.id == "run":
            if name == "snapshot":
                steps.append("snapshot-evidence")
            elif name in ("approve", "manual"):
                steps.append(call.args[0].value)  # type: ignore[attr-defined]
        elif isinstance(owner, ast.Name) and owner.id == "step":
            steps.append(getattr(containment, name).name)
    return steps


def runbook_steps(playbook: str) -> list[str]:
    text = (ROOT / "runbooks" / f"{playbook.replace('_', '-')}.md").read_text()
    section = text.split("## Steps", 1)[1].split("\n## ", 1)[0]
    steps = []
    for line in section.splitlines():
        m = re.match(r"^\d+\. (.*)", line)
        if m:
            steps += re.findall(r"`([a-z-]+)`(?: then)?", m.group(1).split(" — ")[0])
    return steps


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_runbook_lists_the_flow_steps_in_order(playbook: str) -> None:
    assert runbook_steps(playbook) == flow_steps(playbook)
