"""Scheduled, read-only: find drift before an attacker uses it. Runbook: runbooks/posture-audit.md.

Policy: runbooks/hygiene.policy.yaml (ages, allowed link domains); named admins and the inventory come
from the business registry, runbooks/businesses.yaml.
Never destructive: a critical finding (an unknown admin) becomes an alert to the intake, which starts
the account-takeover playbook as any alert does (with its approval).
"""

from __future__ import annotations

import time

from prefect import flow

from tasks import hygiene as step
from waguard.playbook.scheduled import scheduled_run
from waguard.steps import posture


@flow(name="posture-audit", log_prints=False)
async def posture_audit(alert: bool = True) -> dict:
    """Read the business, list findings with a severity, publish them; alert the intake on a critical one.

    Args:
        alert: send critical findings to the intake as an alert (false: report only).
    """
    async with scheduled_run("posture-audit") as run:
        now = time.time()
        # 1. Read everything the rules need (concurrently, within Meta's limits).
        reads = await step.read_posture(run.ports, run.policy, now)
        # 2. Findings, each with a severity (pure rules, waguard.steps.posture).
        found = posture.findings(reads, run.policy, run.settings.intake.public_url, now)
        digest = posture.digest(found)
        run.record.append("audit", "done", f"{len(found)} finding(s) from {reads.calls} Graph reads",
                          data={"findings": posture.as_dicts(found), "digest": digest})
        # 3. The latest result where the intake exports it as gauges (waguard_posture_findings).
        posture.write_latest(run.settings.intake.state_dir, found, now, digest)
        # 4. Slack only when the findings changed since the last audit.
        previous = run.state.state().get("digest")
        if digest != previous:
            worst = found[0].severity if found else "none"
            await run.open_thread(f"posture-audit: {len(found)} finding(s)", "SEV2" if worst == "critical" else "SEV3")
            await run.slack.say(posture.slack_summary(found, previous is None))
            run.state.remember(digest=digest)
        # 5. A critical finding goes to the intake as an alert (account takeover, with its approval).
        critical = [f for f in found if f.severity == "critical"]
        if critical and alert:
            answer = await step.send_takeover_alert(run.ports, critical, now)
            run.record.append("alert-intake", "done", f"{len(critical)} critical finding(s) sent",
                              data={"targets": [f.target for f in critical], "intake": answer})
            run.notes.append(f"critical: alert sent to the intake for {[f.target for f in critical]}")
        markdown = posture.markdown(found, run.started_at, run.settings.meta.business_id)
        return await run.finish("clean" if not found else f"{len(found)} finding(s)", markdown,
                                {"findings": posture.as_dicts(found), "digest": digest, "graph_reads": reads.calls})
