"""Playbook: malicious or phishing templates. Runbook: runbooks/template-abuse.md."""

from __future__ import annotations

from prefect import flow

from tasks import containment as step
from waguard.playbook_run import playbook_run
from waguard.policy import Severity


@flow(name="template-abuse", log_prints=False)
async def template_abuse(
    incident_id: str,
    severity: Severity = "SEV2",
    initiator: str | None = None,
    source: str = "manual",
    plan: bool = False,
    waba_id: str | None = None,
    template_names: list[str] | None = None,
    statuses: list[str] | None = None,
    reasons: list[str] | None = None,
    created_since: int | None = None,
    deregister_numbers: list[str] | None = None,
    revoke_token_path: str | None = None,
    revoke_system_user_id: str | None = None,
    approval_timeout_s: int | None = None,
    poll_interval_s: int = 1,
) -> dict:
    """Remove offending templates; optionally silence the numbers that sent them and the token that made them.

    Args:
        template_names, statuses, reasons, created_since: which templates are offending (all given must match).
        deregister_numbers: phone-number ids to deregister (within the 10-per-72-h budget).
        revoke_token_path, revoke_system_user_id: the token that created them (Vault path) and its owner.
    """
    async with playbook_run("template_abuse", incident_id=incident_id, severity=severity, initiator=initiator,
                            plan=plan, title=f"Template abuse ({source})",
                            approval_timeout_s=approval_timeout_s, poll_interval_s=poll_interval_s) as run:
        waba = waba_id or run.settings.meta.waba_id
        # 1. Find the offending templates and snapshot them (content included) before anything changes.
        offending = await step.find_templates(run.ports.graph, waba, names=template_names or (),
                                              statuses=statuses or (), reasons=reasons or (), since=created_since)
        await run.slack.say(f"Found {len(offending)} offending template(s): "
                            + ", ".join(f"`{t.name}` ({t.language}, {t.status})" for t in offending))
        await run.snapshot("open")
        # 2. Approval.
        decision = await run.approve("approve-containment",
                                     f"Delete {len(offending)} template(s) on WABA `{waba}`"
                                     + (f", deregister {len(deregister_numbers)} number(s)" if deregister_numbers else "")
                                     + (f", revoke the token at `{revoke_token_path}`" if revoke_token_path else "") + ".")
        if not decision.go:
            return await run.finish("denied" if decision.outcome == "denied" else "held", decision.outcome)
        # 3. Delete by hsm_id + name, verified gone.
        await run.record(await step.delete_templates(run.ports, run.fx, waba, offending))
        # 4. Optionally: the numbers that sent them, and the token that created them.
        if deregister_numbers:
            await run.record(await step.deregister_numbers(run.ports, run.fx, deregister_numbers))
        if revoke_token_path and revoke_system_user_id:
            await run.record(await step.revoke_token(run.ports, run.fx, revoke_token_path, revoke_system_user_id))
        # 5. Evidence after, then the summary.
        await run.snapshot("close")
        return await run.finish("planned" if plan else "contained", f"{len(offending)} template(s) removed")
