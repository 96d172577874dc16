"""The scale benchmark's generated fleet: its registry is valid beside the demo business (each app,
WABA, number and Vault path once, paths under the redaction prefixes), its seed is a valid Meta
simulator seed beside the demo business, and in that simulator each business sees only its own people."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from waguard.drills.fleet import make_fleet
from waguard.drills.world import _merge
from waguard.meta.simulator import SimState, demo_seed
from waguard.meta.simulator.seed import Seed
from waguard.playbook.accounts import load_registry
from waguard.playbook.lookup import RegistryIndex
from waguard.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_fleet_registry_is_valid_beside_the_demo_business(tmp_path: Path) -> None:
    fleet = make_fleet(10, 5)
    runbooks = fleet.runbooks_dir(ROOT / "runbooks", tmp_path)  # as the bench and the e2e test do
    settings = Settings(_env_file=None, runbooks_dir=runbooks)  # type: ignore[call-arg]
    registry = load_registry(runbooks, settings)
    assert len(registry.businesses) == 11
    index = RegistryIndex(registry)
    for business, waba in fleet.wabas():
        found = index.by_waba(waba)
        assert found is not None and found.business.app_id == business.app_id
        assert index.by_phone_number(business.number_of(waba)) == found
    assert len(fleet.wabas()) == 50 and len({w for _, w in fleet.wabas()}) == 50
    assert {fleet.wabas()[0][0].index, fleet.wabas()[1][0].index} == {1, 2}  # WABA-major order
    text = (runbooks / "businesses.yaml").read_text()
    assert not any(value in text for value in fleet.secrets().values())


def test_the_fleet_seed_keeps_each_business_to_itself() -> None:
    fleet = make_fleet(3, 2)
    seed = demo_seed(app_secret="demo-app-secret", system_user_token="EAAGdemotokendemotokendemo0123")
    sim = SimState(Seed.model_validate(_merge(seed.model_dump(mode="json"), fleet.seed_changes())))
    first, second = fleet.businesses[0], fleet.businesses[1]
    assert sim.is_admin(first.admin_id, first.business_id)
    assert not sim.is_admin(first.admin_id, second.business_id)
    assert sim.can_reach_waba(first.admin_id, first.wabas[1])
    assert not sim.can_reach_waba(first.admin_id, second.wabas[0])
    assert not sim.can_reach_waba("7000000001", first.wabas[0])  # the demo business's admin
    assert sim.business_of("phone_number", first.number_of(first.wabas[0])).id == first.business_id


def test_a_seed_assigning_one_business_user_to_another_business_waba_is_refused() -> None:
    fleet = make_fleet(2, 1)
    first, second = fleet.businesses
    seed = demo_seed(app_secret="demo-app-secret", system_user_token="EAAGdemotokendemotokendemo0123")
    changes = fleet.seed_changes()
    changes["assigned_users"].append({"waba_id": second.wabas[0], "user_id": first.admin_id})
    with pytest.raises(ValidationError, match="another business than the WABA's"):
        Seed.model_validate(_merge(seed.model_dump(mode="json"), changes))
    changes = fleet.seed_changes()
    changes["wabas"][0]["business_id"] = "2999999"
    with pytest.raises(ValidationError, match="unknown businesses"):
        Seed.model_validate(_merge(seed.model_dump(mode="json"), changes))
