"""Playbook: a Business Manager takeover. Runbook: runbooks/account-takeover.md."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks import containment as step
from waguard.playbook.closing import close_on_hook
from waguard.playbook.parameters import AccountTakeoverParameters, takes
from waguard.playbook.run import playbook_run
from waguard.playbook.scope import Action, Scope


@flow(name="account-takeover", log_prints=False, on_cancellation=[close_on_hook], on_crashed=[close_on_hook])
@takes(AccountTakeoverParameters)
async def account_takeover(**given: Any) -> dict:
    """Take the Business Manager back: only named admins stay, overrides are ours, numbers suspended,
    a new two-step PIN (in Vault first), tokens rotated."""
    p = AccountTakeoverParameters.model_validate(given)
    async with playbook_run("account_takeover", p, title=f"Business Manager takeover ({p.source})",
                            targets={"phone_number_ids": p.phone_number_ids,
                                     "suspect_users": p.suspect_users}) as run:
        account = run.account
        waba, business = account.waba_id, account.business_id
        # The PIN's Vault path and the consumers' token with its owner: this WABA's, from the business
        # registry (runbooks/businesses.yaml) unless the parameters name them.
        pin_path = account.pin(p.pin_path)
        token = account.token(p.rotate_token_path, p.rotate_system_user_id, "account-takeover")
        admins = account.named_admins(run.settings, run.policy.named_admins)  # who stays: this business's
        # 1. Evidence: users, system users, WABA assignments, subscriptions and their overrides.
        await run.snapshot("open")

        async def plan_containment() -> Scope:
            """The numbers (alert updates may add some) and the account-wide steps approval covers."""
            numbers = (run.targets["phone_number_ids"]
                       or [n.id for n in await run.ports.graph.list_phone_numbers(waba)])
            suspects = run.targets["suspect_users"]
            actions = [Action(kind, n) for n in numbers for kind in ("deregister", "set_pin")]
            actions += [Action("remove_unknown_users", f"business {business}"),
                        Action("reset_overrides", f"WABA {waba}"),
                        Action("revoke_token", f"{token.path} (system user {token.system_user_id})"),
                        Action("issue_token", token.path)]
            return Scope(f"Take back business `{business}` (WABA `{waba}`): deregister {len(numbers)} "
                         f"number(s), remove every user but {admins}, reset foreign webhook "
                         f"overrides, set a new two-step PIN, rotate the token at `{token.path}`."
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
        await run.record(await step.remove_unknown_users(run.ports, run.fx, business, waba, admins))
        # 5. Webhook overrides point at us or nowhere.
        await run.record(await step.reset_overrides(run.ports, run.fx, waba, run.settings.intake.public_url))
        # 6. New two-step PIN, written to Vault before it is applied.
        await run.record(await step.set_new_pin(run.ports, run.fx, numbers, pin_path, run.started_at))
        # 7. Rotate the consumers' token.
        await run.record(await step.revoke_token(run.ports, run.fx, token.path, token.system_user_id))
        await run.record(await step.issue_token(run.ports, run.fx, token.path, token.system_user_id,
                                                token.scopes, run.started_at, account.app_id))
        # 8. Evidence after, then the summary.
        await run.snapshot("close")
        return await run.finish("planned" if p.plan else "contained", "Business Manager secured")
