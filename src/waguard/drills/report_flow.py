"""The drill's report in Prefect: a small flow run that publishes it as the `game-day-drill` artifact,
so the team finds each rehearsal beside the playbook runs it exercised (Prefect deprecates artifacts
made outside a run). Its parameter is the report's path, never its content."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact

from waguard.drills.report import markdown


@flow(name="game-day-drill-report", log_prints=False)
async def publish_drill_report(report_path: str) -> str:
    report = json.loads(Path(report_path).read_text())
    await acreate_markdown_artifact(
        key="game-day-drill",
        markdown=markdown(report),
        description=f"waguard game-day drill: {'PASS' if report['passed'] else 'FAIL'}",
    )
    return "PASS" if report["passed"] else "FAIL"
