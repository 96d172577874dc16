"""The hygiene policy (runbooks/hygiene.policy.yaml): the shipped file loads; bad files are clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from waguard.errors import ConfigError
from waguard.playbook.hygiene_policy import HYGIENE_POLICY_FILE, load_hygiene_policy

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"


def copy_runbooks(tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    for name in (HYGIENE_POLICY_FILE, "account-takeover.policy.yaml"):
        shutil.copy(RUNBOOKS / name, tmp_path / name)
    data = yaml.safe_load((tmp_path / HYGIENE_POLICY_FILE).read_text())
    change(data)
    (tmp_path / HYGIENE_POLICY_FILE).write_text(yaml.safe_dump(data))
    return tmp_path


def test_the_shipped_policy_loads_with_the_practice_defaults() -> None:
    policy = load_hygiene_policy(RUNBOOKS)
    assert (policy.tokens.rotate_after_days, policy.tokens.max_age_days) == (60, 90)
    assert {t.path for t in policy.managed_tokens} == {"meta/messaging-token", "meta/system-user-token"}
    assert policy.grace_window_s > 0 and policy.allowed_link_domains


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(grace_windw_s=10), "grace_windw_s"),
    (lambda d: d["tokens"].update(max_age_days=120), "max_age_days"),
    (lambda d: d["tokens"].update(rotate_after_days=90), "rotate_after_days must be below max_age_days"),
    (lambda d: d.update(named_admins=["6000000001"]), "differ from named_admins"),
    (lambda d: d["inventory"]["business_users"]["6000000003"].update(role="ADMIN"), "differ from named_admins"),
    (lambda d: d.update(managed_tokens=[]), "managed_tokens"),
    (lambda d: d["managed_tokens"].append(dict(d["managed_tokens"][0])), "a Vault path twice"),
])
def test_a_bad_policy_is_an_error_naming_the_problem(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        load_hygiene_policy(copy_runbooks(tmp_path, change))


def test_named_admins_must_match_the_account_takeover_policy(tmp_path: Path) -> None:
    def both(d: dict) -> None:  # type: ignore[type-arg]
        d["named_admins"] = ["6000000001", "6000000003"]
        d["inventory"]["business_users"]["6000000002"]["role"] = "EMPLOYEE"
        d["inventory"]["business_users"]["6000000003"]["role"] = "ADMIN"

    with pytest.raises(ConfigError, match="account-takeover"):
        load_hygiene_policy(copy_runbooks(tmp_path, both))
