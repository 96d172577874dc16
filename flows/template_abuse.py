"""Playbook: malicious or phishing templates. Runbook: runbooks/template-abuse.md."""

from __future__ import annotations

from prefect import flow

from tasks import containment as step
from waguard.playbook.closing import close_on_hook
from waguard.playbook.policy import Severity
from waguard.playbook.run import playbook_run
from waguard.playbook.scope import Action, Scope


@flow(name="template-abuse", log_prints=False, on_cancellation=[close_on_hook], on_crashed=[close_on_hook])
async def template_abuse(
    incident_id: str | None = None,
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
        incident_id: the incident's key (a re-run with the same key resumes it); none: a new incident.
        template_names, statuses, reasons, created_since: which templates are offending (all given must match).
        deregister_numbers: phone-number ids to deregister (within the 10-per-72-h budget).
        revoke_token_path, revoke_system_user_id: the token that created them (Vault path) and its owner.
    """
    async with playbook_run("template_abuse", incident_id=incident_id, severity=severity, initiator=initiator,
                            plan=plan, title=f"Template abuse ({source})", waba_id=waba_id,
                            approval_timeout_s=approval_timeout_s, poll_interval_s=poll_interval_s,
                            targets={"template_names": template_names,
                                     "deregister_numbers": deregister_numbers}) as run:
        waba = waba_id or run.settings.meta.waba_id

        async def plan_containment() -> Scope:
            """1. Find the offending templates (alert updates may add names): exactly what approval covers."""
            offending = await step.find_templates(run.ports.graph, waba, names=run.targets["template_names"],
                                                  statuses=statuses or (), reasons=reasons or (),
                                                  since=created_since)
            numbers = run.targets["deregister_numbers"]
            await run.slack.say(f"Found {len(offending)} offending template(s): "
                                + ", ".join(f"`{t.name}` ({t.language}, {t.status})" for t in offending))
            actions = [Action("delete_template", f"{t.name}/{t.language}/{t.id}") for t in offending]
            actions += [Action("deregister", n) for n in numbers]
            if revoke_token_path and revoke_system_user_id:
                actions.append(Action("revoke_token", f"{revoke_token_path} (system user {revoke_system_user_id})"))
            return Scope(f"Delete {len(offending)} template(s) on WABA `{waba}`"
                         + (f", deregister {len(numbers)} number(s)" if numbers else "")
                         + (f", revoke the token at `{revoke_token_path}`" if revoke_token_path else "") + ".",
                         tuple(actions), context=offending)

        # 2. Evidence before anything changes (the bundle holds every template's content).
        await run.snapshot("open")
        removed = 0
        while True:
            # 3. Approval of exactly the planned actions; an alert update while asking re-plans and asks again.
            decision, scope = await run.approve("approve-containment", plan_containment)
            if not decision.go:
                return await run.finish("denied" if decision.outcome == "denied" else "held", decision.outcome)
            # 4. Delete by hsm_id + name, verified gone.
            await run.record(await step.delete_templates(run.ports, run.fx, waba, scope.context))
            removed += len(scope.context)
            # 5. Optionally: the numbers that sent them, and the token that created them.
            if run.targets["deregister_numbers"]:
                await run.record(await step.deregister_numbers(run.ports, run.fx, run.targets["deregister_numbers"]))
            if revoke_token_path and revoke_system_user_id:
                await run.record(await step.revoke_token(run.ports, run.fx, revoke_token_path, revoke_system_user_id))
            # An update that came after approval is contained in this run: plan, ask for what is new, act.
            if not await run.more_updates():
                break
        # 6. Evidence after, then the summary.
        await run.snapshot("close")
        return await run.finish("planned" if plan else "contained", f"{removed} template(s) removed")
