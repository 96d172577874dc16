"""The token steps against the Meta simulator and OpenBao, without a playbook around them (issue 12 item 4).

The leaked token is the consumers' (the messaging-service system user's, as on the local stack), kept at
its own Vault path; the run acts with waguard's own token, as a playbook's Graph client does.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fixtures.meta import MetaSim
from tests.fixtures.vault import OpenBao
from tests.support.steps import StepWorld, ThenChange, step_world
from waguard.local.stack import MESSAGING_SYSTEM_USER, with_messaging_service
from waguard.steps.report import VerificationFailed
from waguard.steps.tokens import issue_token, revoke_token
from waguard.vault.client import VaultClient

CONSUMER = MESSAGING_SYSTEM_USER
SCOPES = ["whatsapp_business_management", "whatsapp_business_messaging"]


@pytest.fixture
async def world(meta_sim: MetaSim, openbao: OpenBao, vault: VaultClient, vault_prefix: str,
                tmp_path: Path) -> StepWorld:
    meta_sim.sim.reset(with_messaging_service(meta_sim.seed, "EAAG" + secrets.token_urlsafe(40)))
    return await step_world(meta_sim, openbao, vault, vault_prefix, tmp_path)


async def leaked_token(meta_sim: MetaSim, vault: VaultClient, path: str, user_id: str) -> str:
    """A token of `user_id` written to Vault at `path`; its simulator id."""
    token = meta_sim.sim.issue_token(user_id, SCOPES)
    await vault.write_secret(path, SecretStr(token.value))
    return token.id


async def test_revoke_kills_the_leaked_token_and_verifies_with_debug_token(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/leaked"
    token_id = await leaked_token(meta_sim, vault, path, CONSUMER)
    async with world.ports() as ports:
        report = await revoke_token(ports, world.effects(), path, CONSUMER)
    assert report.acted == [path] and report.verified and not meta_sim.sim.tokens[token_id].valid
    assert world.done_targets("revoke-token") == [CONSUMER]


async def test_revoke_of_a_token_already_dead_is_already_done(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/leaked"
    token_id = await leaked_token(meta_sim, vault, path, CONSUMER)
    meta_sim.admin.post("/_sim/tokens/revoke", json={"token_id": token_id}).raise_for_status()
    async with world.ports() as ports:
        report = await revoke_token(ports, world.effects(), path, CONSUMER)
    assert report.acted == [] and report.already == [path] and report.verified
    assert not [r for r in meta_sim.requests() if r["method"] == "DELETE"]


async def test_revoke_in_plan_mode_records_the_call_and_the_token_stays_valid(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient, vault_prefix: str) -> None:
    path, fx = f"{vault_prefix}/leaked", world.effects(plan=True)
    token_id = await leaked_token(meta_sim, vault, path, CONSUMER)
    async with world.ports() as ports:
        report = await revoke_token(ports, fx, path, CONSUMER)
    assert report.acted == [] and not report.verified and meta_sim.sim.tokens[token_id].valid
    assert [(c.target, c.call) for c in fx.planned] == [
        (CONSUMER, f"DELETE /v23.0/{CONSUMER}/access_tokens")]


async def test_revoke_raises_when_debug_token_still_says_valid(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient, vault_prefix: str) -> None:
    # The token at the path is a person's, not the system user's: revoking the system user's tokens
    # does not kill it, and only the read-back can tell.
    path = f"{vault_prefix}/leaked"
    token_id = await leaked_token(meta_sim, vault, path, "6000000001")
    async with world.ports() as ports:
        with pytest.raises(VerificationFailed, match=path):
            await revoke_token(ports, world.effects(), path, CONSUMER)
    assert meta_sim.sim.tokens[token_id].valid


async def test_issue_writes_a_working_token_to_vault_as_a_new_version(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/rotated"
    await leaked_token(meta_sim, vault, path, CONSUMER)
    old = await vault.read_secret(path)
    async with world.ports() as ports:
        report = await issue_token(ports, world.effects(), path, CONSUMER, SCOPES,
                                   datetime.now(UTC))
    new = await vault.read_secret(path)
    assert report.acted == [path] and report.verified and new.version == old.version + 1
    fresh = meta_sim.sim.find_token(new.value.get_secret_value())
    assert fresh is not None and fresh.user_id == CONSUMER and fresh.valid
    assert new.value.get_secret_value() not in world.incident.timeline_path.read_text()


async def test_issue_again_in_the_same_incident_keeps_the_working_token(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient, vault_prefix: str) -> None:
    path, started = f"{vault_prefix}/rotated", datetime.now(UTC)
    await leaked_token(meta_sim, vault, path, CONSUMER)
    async with world.ports() as ports:
        await issue_token(ports, world.effects(), path, CONSUMER, SCOPES, started)
        first = await vault.read_secret(path)
        again = await issue_token(ports, world.effects(), path, CONSUMER, SCOPES, started)
    assert again.acted == [] and again.already == [path] and again.verified
    assert (await vault.read_secret(path)).version == first.version


async def test_issue_in_plan_mode_writes_no_version(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient, vault_prefix: str) -> None:
    path, fx = f"{vault_prefix}/rotated", world.effects(plan=True)
    await leaked_token(meta_sim, vault, path, CONSUMER)
    before = await vault.read_secret(path)
    tokens_before = len(meta_sim.sim.tokens)
    async with world.ports() as ports:
        report = await issue_token(ports, fx, path, CONSUMER, SCOPES, datetime.now(UTC))
    assert report.acted == [] and not report.verified and len(meta_sim.sim.tokens) == tokens_before
    assert (await vault.read_secret(path)).version == before.version
    assert [c.target for c in fx.planned] == [CONSUMER]


async def test_issue_raises_when_the_new_token_is_dead_at_the_read_back(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/rotated"
    await leaked_token(meta_sim, vault, path, CONSUMER)
    known = set(meta_sim.sim.tokens)

    def revoked_meanwhile() -> None:  # someone presses Revoke in Business Settings before the read-back
        (new,) = set(meta_sim.sim.tokens) - known
        meta_sim.sim.revoke_token(new)

    race = ThenChange("POST", f"/{CONSUMER}/access_tokens", revoked_meanwhile)
    async with world.ports(race) as ports:
        with pytest.raises(VerificationFailed, match=path):
            await issue_token(ports, world.effects(), path, CONSUMER, SCOPES, datetime.now(UTC))
    assert race.fired
