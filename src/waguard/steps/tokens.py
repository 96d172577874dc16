"""System-user tokens: revoke (verified dead by debug_token), issue a new one into Vault."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from waguard.meta import wire
from waguard.playbook.effects import Effects
from waguard.playbook.ports import Ports
from waguard.steps.report import StepReport, VerificationFailed
from waguard.vault.models import SecretMetadata


async def revoke_token(ports: Ports, fx: Effects, token_path: str, system_user_id: str) -> StepReport:
    """Revoke a system user's tokens; done when debug_token says the leaked one is invalid."""
    report = StepReport(step="revoke-token")
    leaked = (await ports.vault.read_secret(token_path)).value
    if not (await ports.graph.debug_token(leaked)).is_valid:
        report.already.append(token_path)
    elif await fx.graph(report.step, system_user_id, wire.revoke_system_user_tokens(system_user_id),
                        lambda: ports.graph.revoke_system_user_tokens(system_user_id)):
        report.acted.append(token_path)
    if not fx.plan:
        if (await ports.graph.debug_token(leaked)).is_valid:
            raise VerificationFailed(f"debug_token still says the token at {token_path} is valid")
        report.verified = True
    return report


async def issue_token(ports: Ports, fx: Effects, token_path: str, system_user_id: str,
                      scopes: Sequence[str], started_at: datetime, app_id: str | None = None) -> StepReport:
    """A new token for the system user, written to Vault as a new version; done when it works.
    `app_id`: the run's app (default: the settings')."""
    app_id = app_id or ports.settings.meta.app_id
    report = StepReport(step="issue-token")
    meta = await metadata_or_none(ports, token_path)
    current = (await ports.vault.read_secret(token_path)).value if meta else None
    if (
        meta
        and meta.updated_time >= started_at
        and current
        and (await ports.graph.debug_token(current)).is_valid
    ):
        report.already.append(token_path)
    else:
        async def issue() -> None:
            new = await ports.graph.generate_system_user_token(
                system_user_id, app_id=app_id, scopes=scopes)
            await ports.vault.write_secret(token_path, new)

        req = wire.generate_system_user_token(system_user_id, app_id=app_id, scopes=scopes)
        if await fx.graph(report.step, system_user_id, req, issue):
            report.acted.append(token_path)
    if not fx.plan:
        fresh = (await ports.vault.read_secret(token_path)).value
        if not (await ports.graph.debug_token(fresh)).is_valid:
            raise VerificationFailed(f"the new token at {token_path} is not valid per debug_token")
        report.verified = True
    return report


async def metadata_or_none(ports: Ports, path: str) -> SecretMetadata | None:
    from waguard.vault.errors import VaultSecretNotFound

    try:
        return await ports.vault.read_metadata(path)
    except VaultSecretNotFound:
        return None
