"""Playbook: a leaked app secret or system-user token. Runbook: runbooks/leaked-secret.md."""

from __future__ import annotations

from typing import Literal

from prefect import flow

from tasks import containment as step
from waguard.playbook.closing import close_on_hook
from waguard.playbook.policy import Severity
from waguard.playbook.run import playbook_run
from waguard.playbook.scope import Action, Scope
from waguard.steps.app_secret import app_secret_instructions, new_app_secret_written

TOKEN_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")


@flow(name="leaked-secret", log_prints=False, on_cancellation=[close_on_hook], on_crashed=[close_on_hook])
async def leaked_secret(
    incident_id: str | None = None,
    severity: Severity = "SEV2",
    initiator: str | None = None,
    source: str = "manual",
    plan: bool = False,
    waba_id: str | None = None,
    leaked: Literal["app_secret", "token", "both"] = "both",
    leaked_token_path: str = "meta/messaging-token",
    leaked_system_user_id: str = "7000000002",
    dual_secret_window_s: int = 900,
    approval_timeout_s: int | None = None,
    poll_interval_s: int = 1,
) -> dict:
    """Contain a leaked credential. Parameters name Vault paths and ids, never a secret value.

    Args:
        incident_id: the incident's key; a re-run with the same key resumes it; none: a new incident.
        leaked: what leaked: the app secret, a system-user token, or both.
        leaked_token_path: Vault KV path of the leaked system-user token (the consumers' token).
        leaked_system_user_id: the system user that token belongs to.
        dual_secret_window_s: how long webhooks signed with the old app secret are still accepted.
    """
    async with playbook_run("leaked_secret", incident_id=incident_id, severity=severity, initiator=initiator,
                            plan=plan, title=f"Leaked {leaked.replace('_', ' ')} ({source})", waba_id=waba_id,
                            approval_timeout_s=approval_timeout_s, poll_interval_s=poll_interval_s) as run:
        # 1. Evidence before anything changes.
        await run.snapshot("open")
        # 2. Approval: rotating breaks every consumer until it reloads.
        async def plan_containment() -> Scope:
            actions = []
            if leaked in ("app_secret", "both"):
                actions.append(Action("reset_app_secret", run.settings.meta.app_secret_path))
            if leaked in ("token", "both"):
                actions += [Action("revoke_token", f"{leaked_token_path} (system user {leaked_system_user_id})"),
                            Action("issue_token", leaked_token_path)]
            return Scope(f"Contain leaked *{leaked}* for incident `{run.incident_id}`: reset the app secret "
                         f"(dashboard), revoke and reissue the token at `{leaked_token_path}`.", tuple(actions))

        decision, _ = await run.approve("approve-containment", plan_containment)
        if not decision.go:
            return await run.finish("denied" if decision.outcome == "denied" else "held", decision.outcome)
        # 3. App secret: a guided dashboard step, then verified against Graph.
        if leaked in ("app_secret", "both") and not plan:
            await run.manual("reset-app-secret", lambda: new_app_secret_written(run.ports, run.started_at)).wait(
                app_secret_instructions(run.ports, run.incident_id), run.slack.say)
            await run.record(await step.verify_app_secret(run.ports, run.started_at))
            until = await step.open_rotation_window(run.ports, run.started_at, dual_secret_window_s)
            await run.slack.say(f"Webhooks signed with the old secret are accepted until {until:%H:%M:%S} UTC.")
        elif leaked in ("app_secret", "both"):
            run.fx.planned.append(run.fx_manual("reset-app-secret", run.settings.meta.app_secret_path))
        # 4. Tokens: revoke the leaked one (verified dead by debug_token), issue a new one into Vault.
        if leaked in ("token", "both"):
            await run.record(await step.revoke_token(run.ports, run.fx, leaked_token_path, leaked_system_user_id))
            await run.record(await step.issue_token(run.ports, run.fx, leaked_token_path, leaked_system_user_id,
                                                    TOKEN_SCOPES, run.started_at))
        # 5. Evidence after containment, then the summary.
        await run.snapshot("close")
        return await run.finish("planned" if plan else "contained", "credentials rotated and verified")
