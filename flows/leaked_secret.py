"""Playbook: a leaked app secret or system-user token. Runbook: runbooks/leaked-secret.md."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks import containment as step
from waguard.playbook.closing import close_on_hook
from waguard.playbook.parameters import LeakedSecretParameters, takes
from waguard.playbook.run import playbook_run
from waguard.playbook.scope import Action, Scope
from waguard.steps.app_secret import app_secret_instructions, new_app_secret_written


@flow(name="leaked-secret", log_prints=False, on_cancellation=[close_on_hook], on_crashed=[close_on_hook])
@takes(LeakedSecretParameters)
async def leaked_secret(**given: Any) -> dict:
    """Contain a leaked credential. Parameters name Vault paths and ids, never a secret value."""
    p = LeakedSecretParameters.model_validate(given)
    leaked = p.leaked
    title = f"Leaked {leaked.replace('_', ' ')} ({p.source})"
    async with playbook_run("leaked_secret", p, title=title) as run:
        account = run.account
        # The token that leaked and its owner, from the business registry (the alert may name the path).
        token = account.token(p.leaked_token_path, p.leaked_system_user_id, "leaked-secret") \
            if leaked in ("token", "both") else None
        # 1. Evidence before anything changes.
        await run.snapshot("open")
        # 2. Approval: rotating breaks every consumer until it reloads.
        async def plan_containment() -> Scope:
            actions = []
            if leaked in ("app_secret", "both"):
                actions.append(Action("reset_app_secret",
                                      f"{account.app_secret_path} (app {account.app_id})"))
            if token is not None:
                actions += [Action("revoke_token", f"{token.path} (system user {token.system_user_id})"),
                            Action("issue_token", token.path)]
            return Scope(f"Contain leaked *{leaked}* for incident `{run.incident_id}` on WABA "
                         f"`{account.waba_id}`"
                         + (": reset the app secret (dashboard)" if leaked != "token" else "")
                         + (f", revoke and reissue the token at `{token.path}`" if token else "") + ".",
                         tuple(actions))

        decision, _ = await run.approve("approve-containment", plan_containment)
        if not decision.go:
            return await run.finish("denied" if decision.outcome == "denied" else "held", decision.outcome)
        # 3. App secret: a guided dashboard step, then verified against Graph.
        if leaked in ("app_secret", "both") and not p.plan:
            await run.manual("reset-app-secret",
                             lambda: new_app_secret_written(run.ports, run.started_at, account.waba_id)).wait(
                app_secret_instructions(run.ports, run.incident_id, account.app_id), run.slack.say)
            await run.record(await step.verify_app_secret(run.ports, run.started_at, account.waba_id))
            until = await step.open_rotation_window(run.ports, run.started_at, p.dual_secret_window_s,
                                                    account.app_id)
            await run.slack.say(f"Webhooks signed with the old secret are accepted until "
                                f"{until:%H:%M:%S} UTC.")
        elif leaked in ("app_secret", "both"):
            run.fx.planned.append(run.fx_manual("reset-app-secret", account.app_secret_path))
        # 4. Tokens: revoke the leaked one (verified dead by debug_token), issue a new one into Vault.
        if token is not None:
            await run.record(await step.revoke_token(run.ports, run.fx, token.path, token.system_user_id))
            await run.record(await step.issue_token(run.ports, run.fx, token.path, token.system_user_id,
                                                    token.scopes, run.started_at, account.app_id))
        # 5. Evidence after containment, then the summary.
        await run.snapshot("close")
        return await run.finish("planned" if p.plan else "contained", "credentials rotated and verified")
