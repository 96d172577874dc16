"""The app-secret steps against the Meta simulator and OpenBao, without a playbook (issue 12 item 4).

The person's part is played by the simulator's dashboard reset (POST /_sim/app/reset-secret) and a
Vault write, in either order.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fixtures.meta import MetaSim
from tests.fixtures.vault import OpenBao
from tests.support.steps import StepWorld, step_world
from waguard.steps.app_secret import (
    new_app_secret_written,
    open_rotation_window,
    previous_app_secret_version,
    verify_app_secret_rotated,
)
from waguard.steps.report import VerificationFailed
from waguard.vault.client import VaultClient


@pytest.fixture
async def world(meta_sim: MetaSim, openbao: OpenBao, vault: VaultClient, vault_prefix: str,
                tmp_path: Path) -> StepWorld:
    return await step_world(meta_sim, openbao, vault, vault_prefix, tmp_path)


def dashboard_reset(meta_sim: MetaSim) -> SecretStr:
    response = meta_sim.admin.post("/_sim/app/reset-secret")
    response.raise_for_status()
    return SecretStr(response.json()["app_secret"])


async def test_new_secret_is_noticed_only_when_vault_and_meta_both_have_it(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient) -> None:
    started, path = datetime.now(UTC), world.settings.meta.app_secret_path
    async with world.ports() as ports:
        assert not await new_app_secret_written(ports, started)  # nothing new in Vault
        new = dashboard_reset(meta_sim)
        assert not await new_app_secret_written(ports, started)  # reset, not yet in Vault
        await vault.write_secret(path, SecretStr("not-the-new-secret"))
        assert not await new_app_secret_written(ports, started)  # a wrong value: Graph refuses its proof
        await vault.write_secret(path, new)
        assert await new_app_secret_written(ports, started)


async def test_verify_rotation_shows_the_old_proof_rejected(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient) -> None:
    started = datetime.now(UTC)
    async with world.ports() as ports:
        await vault.write_secret(world.settings.meta.app_secret_path, dashboard_reset(meta_sim))
        report = await verify_app_secret_rotated(ports, started)
        await ports.graph.list_phone_numbers(meta_sim.waba_id)  # the reloaded client works
    assert report.verified and report.acted and "Meta code" in report.acted[0]


async def test_verify_rotation_raises_when_the_old_secret_still_works(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient) -> None:
    # Someone wrote the leaked secret to Vault again instead of resetting it in the dashboard: Vault
    # has a new version and Graph accepts it, so only the old-proof check can tell.
    started = datetime.now(UTC)
    async with world.ports() as ports:
        await vault.write_secret(world.settings.meta.app_secret_path, meta_sim.app_secret)
        assert await new_app_secret_written(ports, started)
        with pytest.raises(VerificationFailed, match="old app secret"):
            await verify_app_secret_rotated(ports, started)


async def test_previous_version_is_the_one_current_when_the_incident_began(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient) -> None:
    path = world.settings.meta.app_secret_path
    leaked = (await vault.read_metadata(path)).current_version
    started = datetime.now(UTC)
    await vault.write_secret(path, dashboard_reset(meta_sim))
    async with world.ports() as ports:
        assert await previous_app_secret_version(ports, started) == leaked
        with pytest.raises(VerificationFailed, match="no app-secret version older"):
            await previous_app_secret_version(ports, started - timedelta(days=1))


async def test_rotation_window_names_the_previous_version_and_its_end(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient) -> None:
    path = world.settings.meta.app_secret_path
    leaked = (await vault.read_metadata(path)).current_version
    started = datetime.now(UTC)
    await vault.write_secret(path, dashboard_reset(meta_sim))
    async with world.ports() as ports:
        until = await open_rotation_window(ports, started, 600)
    window = json.loads((await vault.read_secret(world.settings.intake.rotation_window_path)).value
                        .get_secret_value())
    assert window == {"previous_version": leaked, "until": until.isoformat()}
    assert started + timedelta(seconds=600) <= until
