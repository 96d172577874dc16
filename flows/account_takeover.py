"""Playbook: a Business Manager takeover. Runbook: runbooks/account-takeover.md."""

from __future__ import annotations

from prefect import flow

from tasks import containment as step
from waguard.playbook.closing import close_on_hook
from waguard.playbook.policy import Severity
from waguard.playbook.run import playbook_run
from waguard.playbook.scope import Action, Scope

TOKEN_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")


@flow(name="account-takeover", log_prints=False, on_cancellation=[close_on_hook], on_crashed=[close_on_hook])
async def account_takeover(
    incident_id: str | None = None,
    severity: Severity = "SEV1",
    initiator: str | None = None,
    source: str = "manual",
    plan: bool = False,
    waba_id: str | None = None,
    phone_number_ids: list[str] | None = None,
    suspect_users: list[str] | None = None,
    pin_path: str = "meta/two-step-pin",
    rotate_token_path: str = "meta/messaging-token",
    rotate_system_user_id: str = "7000000002",
    approval_timeout_s: int | None = None,
    poll_interval_s: int = 1,
) -> dict:
    """Take the Business Manager back: only named admins stay, overrides are ours, numbers suspended,
    a new two-step PIN (in Vault first), tokens rotated.

    Args:
        phone_number_ids: numbers to deregister and re-PIN (default: every number on the WABA).
        suspect_users: users the alert named (recorded; every user not a named admin is removed anyway).
        pin_path: Vault KV path the new two-step PIN is written to before it is applied.
        rotate_token_path, rotate_system_user_id: the consumers' token to rotate and its owner.
    """
    async with playbook_run("account_takeover", incident_id=incident_id, severity=severity, initiator=initiator,
                            plan=plan, title=f"Business Manager takeover ({source})", waba_id=waba_id,
                            approval_timeout_s=approval_timeout_s, poll_interval_s=poll_interval_s,
                            targets={"phone_number_ids": phone_number_ids, "suspect_users": suspect_users}) as run:
        meta = run.settings.meta
        waba = waba_id or meta.waba_id
        # 1. Evidence: users, system users, WABA assignments, subscriptions and their overrides.
        await run.snapshot("open")

        async def plan_containment() -> Scope:
            """The numbers (alert updates may add some) and the account-wide steps approval covers."""
            numbers = (run.targets["phone_number_ids"]
                       or [n.id for n in await run.ports.graph.list_phone_numbers(waba)])
            suspects = run.targets["suspect_users"]
            actions = [Action(kind, n) for n in numbers for kind in ("deregister", "set_pin")]
            actions += [Action("remove_unknown_users", f"business {meta.business_id}"),
                        Action("reset_overrides", f"WABA {waba}"),
                        Action("revoke_token", f"{rotate_token_path} (system user {rotate_system_user_id})"),
                        Action("issue_token", rotate_token_path)]
            return Scope(f"Take back business `{meta.business_id}`: deregister {len(numbers)} number(s), "
                         f"remove every user but {run.policy.named_admins}, reset foreign webhook "
                         f"overrides, set a new two-step PIN, rotate the token at `{rotate_token_path}`."
                         + (f" Suspects named by the alert: {suspects}." if suspects else ""),
                         tuple(actions), context=numbers)

        # 2. Approval (the policy asks for two people here).
        decision, scope = await run.approve("approve-containment", plan_containment)
        numbers = scope.context
        if not decision.go:
            return await run.finish("denied" if decision.outcome == "denied" else "held", decision.outcome)
        # 3. Suspend the numbers.
        await run.record(await step.deregister_numbers(run.ports, run.fx, numbers))
        # 4. Only named admins remain.
        await run.record(await step.remove_unknown_users(run.ports, run.fx, meta.business_id, waba,
                                                         run.policy.named_admins))
        # 5. Webhook overrides point at us or nowhere.
        await run.record(await step.reset_overrides(run.ports, run.fx, waba, run.settings.intake.public_url))
        # 6. New two-step PIN, written to Vault before it is applied.
        await run.record(await step.set_new_pin(run.ports, run.fx, numbers, pin_path, run.started_at))
        # 7. Rotate the consumers' token.
        await run.record(await step.revoke_token(run.ports, run.fx, rotate_token_path, rotate_system_user_id))
        await run.record(await step.issue_token(run.ports, run.fx, rotate_token_path, rotate_system_user_id,
                                                TOKEN_SCOPES, run.started_at))
        # 8. Evidence after, then the summary.
        await run.snapshot("close")
        return await run.finish("planned" if plan else "contained", "Business Manager secured")
