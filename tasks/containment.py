"""Prefect tasks for the containment steps: a name in the UI, retries for what is worth retrying,
then one call into `waguard.steps`. Results are `StepReport`s: ids and outcomes, no secrets.

Retries apply only to `Retryable` errors (throttling, 5xx, Vault briefly away); every step checks state
before acting, so a retried or re-run step never repeats a destructive call that already landed.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from waguard.errors import only_retryable
from waguard.steps import app_secret, business, numbers, templates, tokens

step = task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 3], retry_condition_fn=only_retryable)

deregister_numbers = step(name="deregister-numbers")(numbers.deregister_numbers)
set_new_pin = step(name="new-two-step-pin")(numbers.set_new_pin)
find_templates = step(name="find-templates")(templates.find_templates)
delete_templates = step(name="delete-templates")(templates.delete_templates)
revoke_token = step(name="revoke-token")(tokens.revoke_token)
issue_token = step(name="issue-token")(tokens.issue_token)
remove_unknown_users = step(name="remove-unknown-users")(business.remove_unknown_users)
reset_overrides = step(name="reset-webhook-overrides")(business.reset_overrides)
verify_app_secret = step(name="verify-app-secret")(app_secret.verify_app_secret_rotated)
open_rotation_window = step(name="open-rotation-window")(app_secret.open_rotation_window)
