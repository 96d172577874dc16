"""The app secret: Meta has no reset API, so a person resets it in the App Dashboard and writes
it to Vault; these steps instruct, notice the new version, verify it and open the webhook window.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from waguard.meta.errors import MetaError
from waguard.playbook.accounts import rotation_window_path
from waguard.playbook.ports import Ports, graph_from_vault
from waguard.steps.report import StepReport, VerificationFailed


def app_secret_instructions(ports: Ports, incident_id: str, app_id: str | None = None) -> str:
    """What a person does for the run's app (its secret's path: the run's business's, `ports.keys`)."""
    meta, vault = ports.settings.meta, ports.settings.vault
    app_id = app_id or meta.app_id
    return (
        f"*Manual step: reset the app secret* (incident {incident_id}). Meta has no API for this.\n"
        f"1. Open App Dashboard › Settings › Basic for app {app_id} and click *Reset* next to App Secret.\n"
        f"2. Write the new secret into Vault without it touching your shell history, in a shell set up as "
        f"runbooks/by-hand.md says (`bao` from the project's .venv/bin, your own Vault token in BAO_TOKEN):\n"
        f"   `read -rs S && printf %s \"$S\" | BAO_ADDR={vault.addr} bao kv put -mount={vault.kv_mount} "
        f"{ports.app_secret_path} value=- && unset S`\n"
        f"3. waguard notices the new Vault version on its own and verifies it against Graph; "
        f"you may also press *Resume* in the Prefect UI."
    )


async def new_app_secret_written(ports: Ports, started_at: datetime, waba_id: str | None = None) -> bool:
    """Vault holds an app-secret version written after the incident began, and Graph accepts it (asked
    about the run's own WABA: default the settings')."""
    meta = await ports.vault.read_metadata(ports.app_secret_path)
    if meta.versions[meta.current_version].created_time < started_at:
        return False
    fresh = await graph_from_vault(ports.settings, ports.vault, keys=ports.keys)
    try:
        await fresh.list_phone_numbers(waba_id or ports.settings.meta.waba_id)
        return True
    except MetaError:
        return False  # e.g. written to Vault but not yet reset in the dashboard
    finally:
        await fresh.aclose()


async def verify_app_secret_rotated(ports: Ports, started_at: datetime,
                                    waba_id: str | None = None) -> StepReport:
    """New secret's appsecret_proof accepted, the previous version's rejected, by Graph itself (asked
    about the run's own WABA: default the settings')."""
    report = StepReport(step="verify-app-secret")
    waba_id = waba_id or ports.settings.meta.waba_id
    previous = await previous_app_secret_version(ports, started_at)
    await ports.reload_graph()
    await ports.graph.list_phone_numbers(waba_id)  # new proof works (raises if not)
    old = await graph_from_vault(ports.settings, ports.vault, app_secret_version=previous, keys=ports.keys)
    try:
        await old.list_phone_numbers(waba_id)
        raise VerificationFailed("Graph still accepts appsecret_proof made with the old app secret")
    except MetaError as err:
        report.acted.append(f"old proof rejected (Meta code {err.code})")
    finally:
        await old.aclose()
    report.verified = True
    return report


async def previous_app_secret_version(ports: Ports, started_at: datetime) -> int:
    """The app-secret version that was current when the incident began (the leaked one)."""
    path = ports.app_secret_path
    meta = await ports.vault.read_metadata(path)
    previous = max((v for v, info in meta.versions.items()
                    if info.created_time < started_at and not info.destroyed), default=None)
    if previous is None:
        raise VerificationFailed(f"no app-secret version older than the incident at {path}")
    return previous


async def open_rotation_window(ports: Ports, started_at: datetime, window_s: int,
                               app_id: str | None = None) -> datetime:
    """Let the intake accept webhooks signed with the previous secret of the run's app (`app_id`,
    default the settings') until `until`, then no more."""
    previous_version = await previous_app_secret_version(ports, started_at)
    until = datetime.now(UTC) + timedelta(seconds=window_s)
    value = json.dumps({"previous_version": previous_version, "until": until.isoformat()})
    path = rotation_window_path(ports.settings, app_id or ports.settings.meta.app_id, ports.app_secret_path)
    await ports.vault.write_secret(path, SecretStr(value))
    return until
