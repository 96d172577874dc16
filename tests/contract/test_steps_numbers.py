"""The number steps against the Meta simulator and OpenBao, without a playbook around them (issue 12 item 4)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fixtures.meta import MetaSim
from tests.fixtures.vault import OpenBao
from tests.support.steps import StepWorld, ThenChange, step_world
from waguard.steps.numbers import deregister_numbers, set_new_pin
from waguard.steps.report import VerificationFailed
from waguard.vault.client import VaultClient

REGISTERED, UNREGISTERED = "4000000001", "4000000003"  # the demo seed's


@pytest.fixture
async def world(meta_sim: MetaSim, openbao: OpenBao, vault: VaultClient, vault_prefix: str,
                tmp_path: Path) -> StepWorld:
    return await step_world(meta_sim, openbao, vault, vault_prefix, tmp_path)


async def test_deregister_acts_on_a_registered_number_and_skips_an_unregistered_one(
        world: StepWorld, meta_sim: MetaSim) -> None:
    async with world.ports() as ports:
        report = await deregister_numbers(ports, world.effects(), [REGISTERED, UNREGISTERED])
    assert report.acted == [REGISTERED] and report.already == [UNREGISTERED] and report.verified
    assert not meta_sim.sim.numbers[REGISTERED].registered
    assert world.done_targets("deregister-numbers") == [REGISTERED]


async def test_deregister_again_finds_the_number_already_done(world: StepWorld, meta_sim: MetaSim) -> None:
    async with world.ports() as ports:
        await deregister_numbers(ports, world.effects(), [REGISTERED])
        again = await deregister_numbers(ports, world.effects(), [REGISTERED])
    assert again.acted == [] and again.already == [REGISTERED] and again.verified
    deregisters = [r for r in meta_sim.requests() if r["method"] == "POST" and r["path"].endswith("/deregister")]
    assert len(deregisters) == 1  # Meta's registration budget is spent once


async def test_deregister_in_plan_mode_records_the_call_and_changes_nothing(
        world: StepWorld, meta_sim: MetaSim) -> None:
    fx = world.effects(plan=True)
    async with world.ports() as ports:
        report = await deregister_numbers(ports, fx, [REGISTERED, UNREGISTERED])
    assert meta_sim.sim.numbers[REGISTERED].registered
    assert report.acted == [] and report.already == [UNREGISTERED] and not report.verified
    assert [(c.step, c.target, c.call) for c in fx.planned] == [
        ("deregister-numbers", REGISTERED, f"POST /v23.0/{REGISTERED}/deregister")]
    assert world.done_targets("deregister-numbers") == []


async def test_deregister_raises_when_the_number_is_registered_again_before_the_read_back(
        world: StepWorld, meta_sim: MetaSim) -> None:
    def attacker_registers_again() -> None:
        with meta_sim.sim.lock:
            number = meta_sim.sim.numbers[REGISTERED]
            number.registered, number.platform_type = True, "CLOUD_API"

    race = ThenChange("POST", f"/{REGISTERED}/deregister", attacker_registers_again)
    async with world.ports(race) as ports:
        with pytest.raises(VerificationFailed, match=REGISTERED):
            await deregister_numbers(ports, world.effects(), [REGISTERED])
    assert race.fired


async def test_new_pin_is_written_to_vault_first_then_set_on_every_number(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient, vault_prefix: str) -> None:
    numbers, pin_path = ["4000000001", "4000000002"], f"{vault_prefix}/meta/pin"
    before = {n: meta_sim.pin(n).get_secret_value() for n in numbers}
    async with world.ports() as ports:
        report = await set_new_pin(ports, world.effects(), numbers, pin_path, datetime.now(UTC))
    pin = (await vault.read_secret(pin_path)).value.get_secret_value()
    assert sorted(report.acted) == numbers and report.verified
    assert all(meta_sim.pin(n).get_secret_value() == pin != before[n] for n in numbers)
    assert world.done_targets("new-two-step-pin")[0] == pin_path  # Vault before Meta: never a lost PIN
    assert pin not in world.incident.timeline_path.read_text() and pin not in report.model_dump_json()


async def test_new_pin_rerun_in_the_same_incident_reapplies_the_same_pin(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient, vault_prefix: str) -> None:
    pin_path, started = f"{vault_prefix}/meta/pin", datetime.now(UTC)
    async with world.ports() as ports:
        await set_new_pin(ports, world.effects(), [REGISTERED], pin_path, started)
        first = await vault.read_secret(pin_path)
        await set_new_pin(ports, world.effects(), [REGISTERED], pin_path, started)
    again = await vault.read_secret(pin_path)
    assert again.version == first.version and meta_sim.pin(REGISTERED) == first.value


async def test_new_pin_of_an_earlier_incident_is_not_reused(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient, vault_prefix: str) -> None:
    pin_path = f"{vault_prefix}/meta/pin"
    async with world.ports() as ports:
        await set_new_pin(ports, world.effects(), [REGISTERED], pin_path, datetime.now(UTC))
        old = await vault.read_secret(pin_path)
        await set_new_pin(ports, world.effects(), [REGISTERED], pin_path, datetime.now(UTC))
    new = await vault.read_secret(pin_path)
    assert new.version == old.version + 1 and meta_sim.pin(REGISTERED) == new.value


async def test_new_pin_in_plan_mode_writes_no_vault_version_and_sets_no_pin(
        world: StepWorld, meta_sim: MetaSim, vault: VaultClient, vault_prefix: str) -> None:
    from waguard.vault.errors import VaultSecretNotFound

    pin_path, fx = f"{vault_prefix}/meta/pin", world.effects(plan=True)
    before = meta_sim.pin(REGISTERED)
    async with world.ports() as ports:
        report = await set_new_pin(ports, fx, [REGISTERED], pin_path, datetime.now(UTC))
    assert report.acted == [] and not report.verified and meta_sim.pin(REGISTERED) == before
    with pytest.raises(VaultSecretNotFound):
        await vault.read_secret(pin_path)
    assert [(c.target, c.call) for c in fx.planned] == [
        (pin_path, f"vault kv put secret/{pin_path}"), (REGISTERED, f"POST /v23.0/{REGISTERED} (pin)")]
