"""Prefect tasks for the scheduled hygiene deployments: a name in the UI, retries for what is worth
retrying, then one call into `waguard.steps`. Results are reports and findings: ids, ages, no secrets.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from waguard.errors import only_retryable
from waguard.steps import app_secret, posture, posture_alert, rotation

step = task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 3], retry_condition_fn=only_retryable)
once = task(cache_policy=NO_CACHE)  # not retried: a second issue would leave a token nobody tracks

rotate_token = once(name="rotate-token")(rotation.rotate_token)
revoke_replaced = step(name="revoke-replaced-token")(rotation.revoke_replaced)
rotate_pin = step(name="rotate-two-step-pin")(rotation.rotate_pin)
app_secret_due = step(name="app-secret-age")(rotation.app_secret_due)
verify_app_secret = step(name="verify-app-secret")(app_secret.verify_app_secret_rotated)
open_rotation_window = step(name="open-rotation-window")(app_secret.open_rotation_window)
read_posture = step(name="read-posture")(posture.read_posture)
send_takeover_alert = step(name="alert-intake")(posture_alert.send_takeover_alert)
