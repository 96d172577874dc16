"""The business registry with several businesses: its validation (each app, WABA, phone number and app
secret path listed once, the error naming the file and the key) and the lookups the intake resolves a
delivery's business with."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from waguard.errors import ConfigError
from waguard.playbook.accounts import Registry, account_for, load_registry, rotation_window_path
from waguard.playbook.lookup import Found, RegistryIndex, Unresolved
from waguard.settings import Settings

TWO = """
businesses:
  - business_id: "21"
    app_id: "11"
    token_path: meta/system-user-token
    wabas:
      - waba_id: "31"
        phone_number_ids: ["41"]
        display_names: {"42": Shop}
      - waba_id: "32"
        phone_number_ids: ["43"]
  - business_id: "22"
    app_id: "12"
    app_secret_path: meta/brand-b/app-secret
    token_path: meta/brand-b/token
    wabas:
      - waba_id: "33"
        phone_number_ids: ["44"]
"""


def settings_with(tmp_path: Path, text: str) -> Settings:
    (tmp_path / "businesses.yaml").write_text(text)
    return Settings(_env_file=None, runbooks_dir=tmp_path)  # type: ignore[call-arg]


@pytest.mark.parametrize(("edit", "key", "what"), [
    (('app_id: "12"', 'app_id: "11"'), "businesses.1.app_id",
     "app 11 is listed twice (also at businesses.0.app_id)"),
    (('waba_id: "33"', 'waba_id: "32"'), "businesses.1.wabas.0.waba_id", "WABA 32 is listed twice"),
    (('["44"]', '["42"]'), "businesses.1.wabas.0.phone_number_ids", "phone number 42 is listed twice"),
    (("    app_secret_path: meta/brand-b/app-secret\n", ""), "businesses.1.app_secret_path",
     "app secret path (the settings' meta.app_secret_path) is listed twice"),
    (("token_path: meta/brand-b/token", "token_path: meta/system-user-token"), "businesses.1.token_path",
     "token path meta/system-user-token is listed twice"),
])
def test_an_id_listed_twice_is_an_error_naming_the_file_and_key(tmp_path: Path, edit: tuple[str, str],
                                                               key: str, what: str) -> None:
    settings = settings_with(tmp_path, TWO.replace(*edit))
    with pytest.raises(ConfigError) as err:
        load_registry(settings.runbooks_dir, settings)
    message = str(err.value)
    assert str(tmp_path / "businesses.yaml") in message and key in message and what in message, message


def test_a_business_secret_outside_the_redacted_prefixes_is_refused(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, TWO.replace("meta/brand-b/token", "elsewhere/token"))
    with pytest.raises(ConfigError, match=r"businesses\.1\.token_path: elsewhere/token is under none of "
                                          r"evidence\.secret_prefixes"):
        load_registry(settings.runbooks_dir, settings)


def test_each_business_resolves_its_own_vault_paths(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, TWO)
    a, b = account_for(settings, "32"), account_for(settings, "33")
    assert (a.business_id, a.app_id, a.app_secret_path, a.token_path) == (
        "21", "11", settings.meta.app_secret_path, settings.meta.token_path)  # unset: the settings'
    assert (b.business_id, b.app_id, b.app_secret_path, b.token_path) == (
        "22", "12", "meta/brand-b/app-secret", "meta/brand-b/token")
    # Each app's rotation window is its own; the settings' app keeps the settings' path.
    assert rotation_window_path(settings, "11", a.app_secret_path) == settings.intake.rotation_window_path
    assert rotation_window_path(settings, "12", b.app_secret_path) == \
        f"{settings.intake.rotation_window_path}/12"


def test_lookups_by_waba_app_and_phone_number() -> None:
    index = RegistryIndex(Registry.model_validate(yaml.safe_load(TWO)))
    found = index.by_waba("33")
    assert found is not None and found.business.business_id == "22"
    assert index.by_waba("39") is None
    b = index.by_app("12")
    assert b is not None and b.business_id == "22" and index.by_app("19") is None
    for number, waba in (("41", "31"), ("42", "31"), ("43", "32"), ("44", "33")):  # display_names count
        hit = index.by_phone_number(number)
        assert hit is not None and hit.waba.waba_id == waba
    assert index.by_phone_number("49") is None and index.only_waba() is None


@pytest.mark.parametrize(("given", "expected"), [
    ({"waba_id": "32"}, "32"),
    ({"phone_number_ids": ["43"]}, "32"),
    ({"app_id": "12"}, "33"),                                       # B has one WABA
    ({"waba_id": "31", "phone_number_ids": ["41", "42"], "app_id": "11"}, "31"),
    ({"waba_id": "31", "phone_number_ids": ["43"]},
     "phone number 43 belongs to WABA 32, not WABA 31"),
    ({"waba_id": "33", "app_id": "11"}, "WABA 33 belongs to app 12, not app 11"),
    ({"app_id": "11"}, "app 11's business has 2 WABAs"),
    ({"phone_number_ids": ["49"]}, "phone number 49 is not in the business registry"),
    ({"waba_id": "39"}, "WABA 39 is not in the business registry"),
    ({}, "names no WABA, app or phone number"),
])
def test_resolve_takes_the_one_waba_everything_given_agrees_on(given: dict, expected: str) -> None:
    index = RegistryIndex(Registry.model_validate(yaml.safe_load(TWO)))
    got = index.resolve(**given)
    if expected.isdigit():
        assert isinstance(got, Found) and got.waba.waba_id == expected
    else:
        assert isinstance(got, Unresolved) and expected in got.reason


def test_the_single_business_settings_are_a_one_entry_registry(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, runbooks_dir=tmp_path)  # type: ignore[call-arg]  # no file
    index = RegistryIndex(load_registry(tmp_path, settings))
    only = index.resolve()
    assert isinstance(only, Found) and only.waba.waba_id == settings.meta.waba_id
    account = account_for(settings, None)
    assert (account.app_secret_path, account.token_path) == (settings.meta.app_secret_path,
                                                             settings.meta.token_path)


def test_vault_policies_grant_each_business_its_own_paths(tmp_path: Path) -> None:
    from waguard.vault.identities import RENDER

    settings = settings_with(tmp_path, TWO)
    intake, playbook = RENDER["intake"](settings), RENDER["playbook"](settings)
    window = f"{settings.intake.rotation_window_path}/12"
    for path in ("meta/brand-b/app-secret", "meta/brand-b/token", window):
        assert f'path "secret/data/{path}" {{ capabilities = ["read"] }}' in intake, path
    assert 'path "secret/data/meta/brand-b/app-secret" { capabilities = ["read"] }' in playbook
    assert f'path "secret/data/{window}" {{ capabilities = ["create", "update"] }}' in playbook
    # One business: nothing beyond the settings' own paths (deploy/vault/*.hcl stay the rendering).
    one = settings_with(tmp_path, TWO.split("  - business_id: \"22\"")[0])
    assert "brand-b" not in RENDER["intake"](one) and window not in RENDER["playbook"](one)


def test_account_takeover_keeps_each_business_own_admins(tmp_path: Path) -> None:
    """One policy list cannot name every business's people: used on business 22 it would remove all of
    22's users. The registry's ADMINs of the run's business are who stays."""
    text = TWO.replace('  - business_id: "22"\n', '  - business_id: "22"\n'
                       '    business_users:\n'
                       '      "61": {name: Ana, role: ADMIN}\n'
                       '      "62": {name: Eve, role: EMPLOYEE}\n')
    settings = settings_with(tmp_path, text)
    settings = settings.model_copy(update={"meta": settings.meta.model_copy(update={"business_id": "21"})})
    policy_admins = ["6000000001"]
    assert account_for(settings, "33").named_admins(settings, policy_admins) == ["61"]
    # The settings' own business, with no business_users listed: the policy file's list.
    assert account_for(settings, "31").named_admins(settings, policy_admins) == policy_admins
    # Another business that lists no ADMIN: refused, never the policy's (another business's) people.
    bare = settings_with(tmp_path, TWO)
    bare = bare.model_copy(update={"meta": bare.meta.model_copy(update={"business_id": "21"})})
    with pytest.raises(ConfigError, match="business 22 lists no ADMIN"):
        account_for(bare, "33").named_admins(bare, policy_admins)
