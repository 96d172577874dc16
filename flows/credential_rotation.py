"""Scheduled: keep long-lived credentials young. Runbook: runbooks/credential-rotation.md.

Policy: runbooks/hygiene.policy.yaml (ages, grace window); the managed tokens and the PIN path are the
WABA's in runbooks/businesses.yaml.
"""

from __future__ import annotations

import asyncio
import time

from prefect import flow

from tasks import hygiene as step
from waguard.playbook.scheduled import scheduled_run
from waguard.steps.app_secret import app_secret_instructions, new_app_secret_written
from waguard.steps.rotation import PendingRevocation, due_revocations, wait_until


@flow(name="credential-rotation", log_prints=False)
async def credential_rotation(plan: bool = False, grace_window_s: int | None = None,
                              wait_for_grace: bool = True) -> dict:
    """Rotate what is due: system-user tokens (old ones revoked after a grace window), the two-step PIN,
    and, through a person in the App Dashboard, the app secret.

    Args:
        plan: read-only preview: what would be rotated, nothing changes.
        grace_window_s: override the policy's grace window (drills use a short one).
        wait_for_grace: wait out the grace window in this run and revoke; false: the next run revokes.
    """
    async with scheduled_run("credential-rotation", plan=plan) as run:
        policy, state = run.policy, run.state
        grace = policy.grace_window_s if grace_window_s is None else grace_window_s
        pending = [PendingRevocation.model_validate(p) for p in state.state().get("pending_revocations", [])]

        def keep(items: list[PendingRevocation]) -> None:
            if not plan:
                state.remember(pending_revocations=[p.model_dump() for p in items])

        # 1. Tokens: a new 60-day token into Vault (verified), the old one pending revocation.
        for managed in policy.managed_tokens:
            rotated = await step.rotate_token(run.ports, run.fx, managed, policy.tokens, grace, time.time())
            await run.record_step(rotated.report)
            if rotated.pending is not None:
                pending = [p for p in pending if p.path != managed.path or p.version != rotated.pending.version]
                keep([*pending, rotated.pending])
                pending.append(rotated.pending)
                if managed.path == run.settings.meta.token_path:
                    await run.ports.reload_graph()  # waguard's own token: act with the new one from now on
        # 2. The two-step PIN: Vault first, then every number.
        await run.record_step(await step.rotate_pin(run.ports, run.fx, policy.pin_path, policy.pin, time.time()))
        # 3. Grace window: consumers reload from Vault; then the replaced tokens are revoked and verified dead.
        if pending and wait_for_grace and not plan:
            until = max(p.not_before for p in pending)
            run.notes.append(f"replaced token(s) stay valid until {time.strftime('%H:%M:%S', time.gmtime(until))} UTC")
            await wait_until(until, time.time, asyncio.sleep)
        for due in due_revocations(pending, time.time()):
            await run.record_step(await step.revoke_replaced(run.ports, run.fx, due))
            pending = [p for p in pending if p != due]
            keep(pending)
        # 4. The app secret: no API; past its age a person resets it in the App Dashboard.
        why = await step.app_secret_due(run.ports, policy.app_secret, time.time())
        if why and not plan:
            await run.open_thread("credential-rotation: app secret reset needed", "SEV3")
            await run.slack.say(f"The app secret is {why}.")
            started = run.started_at
            await run.manual("reset-app-secret", lambda: new_app_secret_written(run.ports, started),
                             policy.manual_step_timeout_s).wait(
                app_secret_instructions(run.ports, run.record.incident_id), run.slack.say)
            await run.record_step(await step.verify_app_secret(run.ports, started))
            until = await step.open_rotation_window(run.ports, started, policy.dual_secret_window_s)
            run.notes.append(f"webhooks signed with the old app secret are accepted until {until:%H:%M:%S} UTC")
        elif why:
            run.notes.append(f"app secret {why}: a dashboard reset would be requested")
        lines = [f"| {r.step} | {', '.join(r.acted) or '-'} | {', '.join(r.already) or '-'} | {r.verified} |"
                 for r in run.reports]
        markdown = ("# Credential rotation\n\n| step | rotated | already fine | verified |\n|---|---|---|---|\n"
                    + "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in run.notes)
                    + (f"\n- pending revocations: {[f'{p.path} v{p.version}' for p in pending]}" if pending else ""))
        if plan:  # what a real run would change, call by call (names and ids, never values)
            markdown += "\n\n## Planned calls\n\n" + ("\n".join(
                f"- {c.step}: {c.target}: `{c.call}`" for c in run.fx.planned) or "- none: nothing is due")
        status = "planned" if plan else "rotated" if any(r.acted for r in run.reports) else "nothing due"
        return await run.finish(status, markdown, {"pending_revocations": [p.model_dump() for p in pending],
                                                   "planned": [c.model_dump() for c in run.fx.planned]})
