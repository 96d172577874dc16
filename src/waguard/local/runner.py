"""Serve every deployment in prefect.yaml from one process (what `waguard up` runs).

prefect.yaml stays the one declaration of the deployments; this reads it and hands each flow to
Prefect's `serve()`, so the UI's "Quick run" works with no work pool. At most one active run per
playbook and WABA is enforced inside the flows with a global concurrency limit (see playbook_run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.flows import Flow, load_flow_from_entrypoint

from waguard.local.schedules import deployment_schedules

RUN_LIMIT = 8  # paused runs hold a slot (prefect-notes §1.5): leave room for several incidents


def deployments(project: Path) -> list[RunnerDeployment]:
    spec = yaml.safe_load((project / "prefect.yaml").read_text())
    out: list[RunnerDeployment] = []
    for d in spec["deployments"]:
        flow: Flow[..., Any] = load_flow_from_entrypoint(str(project / d["entrypoint"]))
        deployment = flow.to_deployment(
            name=d["name"],
            description=d.get("description"),
            tags=d.get("tags"),
            parameters=d.get("parameters") or {},
            schedules=deployment_schedules(d),
        )
        assert isinstance(deployment, RunnerDeployment)  # called outside an event loop: not a coroutine
        out.append(deployment)
    return out


def main() -> None:
    project = Path.cwd()
    serve(*deployments(project), limit=RUN_LIMIT, print_starting_message=True)


if __name__ == "__main__":
    main()
