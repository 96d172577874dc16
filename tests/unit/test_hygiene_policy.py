"""The hygiene policy: the rules in runbooks/hygiene.policy.yaml, who and what belongs from the business
registry (runbooks/businesses.yaml). The shipped files load; a bad file or a missing fact is an error
naming the file and the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from waguard.errors import ConfigError
from waguard.playbook.accounts import REGISTRY_FILE
from waguard.playbook.hygiene_policy import HYGIENE_POLICY_FILE, load_hygiene_policy

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
FILES = (HYGIENE_POLICY_FILE, REGISTRY_FILE, "account-takeover.policy.yaml")


def copy_runbooks(tmp_path: Path, name: str, change) -> Path:  # type: ignore[no-untyped-def]
    for each in FILES:
        shutil.copy(RUNBOOKS / each, tmp_path / each)
    data = yaml.safe_load((tmp_path / name).read_text())
    change(data)
    (tmp_path / name).write_text(yaml.safe_dump(data))
    return tmp_path


def test_the_shipped_policy_loads_with_the_practice_defaults_and_the_registrys_facts() -> None:
    policy = load_hygiene_policy(RUNBOOKS)
    assert (policy.tokens.rotate_after_days, policy.tokens.max_age_days) == (60, 90)
    assert policy.grace_window_s > 0 and policy.allowed_link_domains
    # From businesses.yaml: the WABA's tokens and PIN path, the people, the app, the WABAs.
    assert {t.path for t in policy.managed_tokens} == {"meta/messaging-token", "meta/system-user-token"}
    assert policy.pin_path == "meta/two-step-pin"
    assert policy.named_admins == ["6000000001", "6000000002"]
    assert policy.inventory.business_users["6000000003"].role == "EMPLOYEE"
    assert policy.inventory.system_users == ["7000000001", "7000000002"]
    assert (policy.inventory.apps, policy.inventory.wabas) == (["1000000001"], ["3000000001"])
    assert policy.inventory.display_names["4000000003"] == "Jasper's Ice Cream"
    assert load_hygiene_policy(RUNBOOKS, "3000000001") == policy


def test_the_policy_file_no_longer_lists_what_the_registry_says() -> None:
    rules = yaml.safe_load((RUNBOOKS / HYGIENE_POLICY_FILE).read_text())
    assert not {"named_admins", "inventory", "managed_tokens", "pin_path"} & set(rules)


def _biz(d: dict) -> dict:  # type: ignore[type-arg]
    return d["businesses"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("name", "change", "message"), [
    (HYGIENE_POLICY_FILE, lambda d: d.update(grace_windw_s=10), f"(?s){HYGIENE_POLICY_FILE}.*grace_windw_s"),
    (HYGIENE_POLICY_FILE, lambda d: d["tokens"].update(max_age_days=120), "max_age_days"),
    (HYGIENE_POLICY_FILE, lambda d: d["tokens"].update(rotate_after_days=90),
     "rotate_after_days must be below max_age_days"),
    # The old duplicated keys are refused, not silently ignored.
    (HYGIENE_POLICY_FILE, lambda d: d.update(named_admins=["6000000001"]), "named_admins"),
    (HYGIENE_POLICY_FILE, lambda d: d.update(inventory={}), "inventory"),
    # Facts the deployments need and the registry lacks: named by file and key.
    (REGISTRY_FILE, lambda d: _biz(d).pop("business_users"), r"businesses\.yaml: businesses\[0\]\.business_users"),
    (REGISTRY_FILE, lambda d: _biz(d)["business_users"]["6000000001"].update(role="OWNER"), "role"),
    (REGISTRY_FILE, lambda d: [_biz(d)["business_users"][u].update(role="EMPLOYEE")
                               for u in ("6000000001", "6000000002")], r"business_users names no ADMIN"),
    (REGISTRY_FILE, lambda d: _biz(d)["wabas"][0].pop("pin_path"), r"businesses\[0\]\.wabas\[0\]\.pin_path"),
    (REGISTRY_FILE, lambda d: _biz(d)["wabas"][0].update(tokens=[]), r"businesses\[0\]\.wabas\[\*\]\.tokens"),
    (REGISTRY_FILE, lambda d: _biz(d)["wabas"][0].update(display_name={}), "display_name"),
])
def test_a_bad_policy_or_registry_is_an_error_naming_the_file_and_key(
        tmp_path: Path, name: str, change, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        load_hygiene_policy(copy_runbooks(tmp_path, name, change))


def test_a_missing_registry_or_an_unlisted_waba_is_an_error(tmp_path: Path) -> None:
    copy_runbooks(tmp_path, HYGIENE_POLICY_FILE, lambda d: None)
    with pytest.raises(ConfigError, match="3000000099"):
        load_hygiene_policy(tmp_path, "3000000099")
    (tmp_path / REGISTRY_FILE).unlink()
    with pytest.raises(ConfigError, match=f"{REGISTRY_FILE} is missing"):
        load_hygiene_policy(tmp_path)


def test_the_registrys_admins_must_match_the_account_takeover_policy(tmp_path: Path) -> None:
    def swap(d: dict) -> None:  # type: ignore[type-arg]
        _biz(d)["business_users"]["6000000002"]["role"] = "EMPLOYEE"
        _biz(d)["business_users"]["6000000003"]["role"] = "ADMIN"

    with pytest.raises(ConfigError, match="account-takeover.policy.yaml's named_admins"):
        load_hygiene_policy(copy_runbooks(tmp_path, REGISTRY_FILE, swap))
