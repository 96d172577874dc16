"""Playbook: malicious or phishing templates. Runbook: runbooks/template-abuse.md."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks import containment as step
from waguard.playbook.closing import close_on_hook
from waguard.playbook.parameters import TemplateAbuseParameters, takes
from waguard.playbook.run import playbook_run
from waguard.playbook.scope import Action, Scope


@flow(name="template-abuse", log_prints=False, on_cancellation=[close_on_hook], on_crashed=[close_on_hook])
@takes(TemplateAbuseParameters)
async def template_abuse(**given: Any) -> dict:
    """Remove offending templates; optionally silence the numbers that sent them and the token that
    made them."""
    p = TemplateAbuseParameters.model_validate(given)
    revoke = p.revoke_token_path if p.revoke_token_path and p.revoke_system_user_id else None
    async with playbook_run("template_abuse", p, title=f"Template abuse ({p.source})",
                            targets={"template_names": p.template_names,
                                     "deregister_numbers": p.deregister_numbers}) as run:
        waba = run.waba_id

        async def plan_containment() -> Scope:
            """1. Find the offending templates (alert updates may add names): exactly what approval covers."""
            offending = await step.find_templates(run.ports.graph, waba, names=run.targets["template_names"],
                                                  statuses=p.statuses or (), reasons=p.reasons or (),
                                                  since=p.created_since)
            numbers = run.targets["deregister_numbers"]
            await run.slack.say(f"Found {len(offending)} offending template(s): "
                                + ", ".join(f"`{t.name}` ({t.language}, {t.status})" for t in offending))
            actions = [Action("delete_template", f"{t.name}/{t.language}/{t.id}") for t in offending]
            actions += [Action("deregister", n) for n in numbers]
            if revoke:
                actions.append(Action("revoke_token", f"{revoke} (system user {p.revoke_system_user_id})"))
            return Scope(f"Delete {len(offending)} template(s) on WABA `{waba}`"
                         + (f", deregister {len(numbers)} number(s)" if numbers else "")
                         + (f", revoke the token at `{revoke}`" if revoke else "") + ".",
                         tuple(actions), context=offending)

        # 2. Evidence before anything changes (the bundle holds every template's content).
        await run.snapshot("open")
        removed = 0
        while True:
            # 3. Approval of exactly the planned actions; an alert update while asking re-plans, asks again.
            decision, scope = await run.approve("approve-containment", plan_containment)
            if not decision.go:
                return await run.finish("denied" if decision.outcome == "denied" else "held",
                                        decision.outcome)
            # 4. Delete by hsm_id + name, verified gone.
            await run.record(await step.delete_templates(run.ports, run.fx, waba, scope.context))
            removed += len(scope.context)
            # 5. Optionally: the numbers that sent them, and the token that created them.
            if run.targets["deregister_numbers"]:
                numbers = run.targets["deregister_numbers"]
                await run.record(await step.deregister_numbers(run.ports, run.fx, numbers))
            if revoke:
                await run.record(await step.revoke_token(run.ports, run.fx, revoke, p.revoke_system_user_id))
            # An update that came after approval is contained in this run: plan, ask for what is new, act.
            if not await run.more_updates():
                break
        # 6. Evidence after, then the summary.
        await run.snapshot("close")
        return await run.finish("planned" if p.plan else "contained", f"{removed} template(s) removed")
