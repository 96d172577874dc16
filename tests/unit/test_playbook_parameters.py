"""One definition of each playbook's parameters (`waguard.playbook.parameters`): the flows' signatures and
Prefect forms, the intake's run requests and prefect.yaml's Quick-run values all agree with it; and the
business registry (`runbooks/businesses.yaml`) is where a run's site-specific ids come from."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from prefect.exceptions import ParameterTypeError, SignatureMismatchError
from pydantic import ValidationError

from flows.account_takeover import account_takeover
from flows.leaked_secret import leaked_secret
from flows.template_abuse import template_abuse
from waguard.errors import ConfigError
from waguard.intake.params import build_parameters
from waguard.playbook.accounts import Registry, account_for, load_registry
from waguard.playbook.names import FLOW_NAMES
from waguard.playbook.parameters import PARAMETER_MODELS
from waguard.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FLOWS = {"leaked_secret": leaked_secret, "template_abuse": template_abuse,
         "account_takeover": account_takeover}


@pytest.mark.parametrize("playbook", list(FLOWS))
def test_the_flow_form_is_the_model(playbook: str) -> None:
    """Prefect's form for the flow (what the UI renders and validates) has exactly the model's fields,
    defaults and help texts, and none is required (a Quick run needs no input)."""
    model, schema = PARAMETER_MODELS[playbook], FLOWS[playbook].parameters.model_dump()  # type: ignore[index]
    props = schema["properties"]
    assert list(props) == list(model.model_fields)
    assert not schema.get("required")
    for name, field in model.model_fields.items():
        assert props[name].get("default") == field.default, name
        assert props[name].get("description") == field.description, name


def test_the_form_refuses_what_the_model_refuses() -> None:
    with pytest.raises(ParameterTypeError, match="waba_id"):
        leaked_secret.validate_parameters({"waba_id": "not-a-waba"})
    with pytest.raises(SignatureMismatchError):
        leaked_secret.validate_parameters({"leaked_token": "x"})  # no such parameter
    assert account_takeover.validate_parameters({})  # every parameter has a default


def test_prefect_yaml_quick_run_values_are_valid_parameters() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    seen = set()
    for deployment in spec["deployments"]:
        playbook = deployment["entrypoint"].split(":")[1]
        if playbook not in FLOWS:
            continue  # the scheduled deployments are not playbooks
        assert deployment["name"] == FLOW_NAMES[playbook]
        PARAMETER_MODELS[playbook].model_validate(deployment.get("parameters") or {})
        seen.add(playbook)
    assert seen == set(FLOWS)


def test_the_intake_sends_every_parameter_and_always_the_managed_four() -> None:
    """Left out, a parameter would take the deployment's Quick-run value (prefect.yaml's statuses for
    template-abuse): meant for people in the UI, never for an alert's run."""
    common = {"incident_id": "i", "severity": "SEV2", "initiator": "intake:meta", "source": "s"}
    sent = build_parameters("template_abuse", {**common, "template_names": ["x"], "waba_id": None})
    assert set(sent) == set(PARAMETER_MODELS["template_abuse"].model_fields)
    assert sent["statuses"] is None and sent["template_names"] == ["x"] and sent["waba_id"] is None
    with pytest.raises(ValidationError, match="initiator"):
        build_parameters("leaked_secret", {**common, "initiator": None})
    with pytest.raises(ValidationError):
        build_parameters("leaked_secret", {**common, "leaked_system_user_id": "not digits"})


def test_no_site_specific_id_is_a_default_in_flows_or_parameters() -> None:
    """Ids of a real account (long digit strings) never sit in the playbooks' code."""
    paths = [*sorted((ROOT / "flows").glob("*.py")), ROOT / "src/waguard/playbook/parameters.py",
             ROOT / "src/waguard/playbook/run.py"]
    found = [f"{p.name}: {node.value}" for p in paths for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and re.fullmatch(r"[0-9]{6,}", node.value)]
    assert found == []


# --- the business registry ------------------------------------------------------------------------------


def registry_dir(tmp_path: Path, text: str | None) -> Settings:
    if text is not None:
        (tmp_path / "businesses.yaml").write_text(text)
    return Settings(runbooks_dir=tmp_path)


TWO_WABAS = """
businesses:
  - business_id: "21"
    app_id: "11"
    wabas:
      - waba_id: "31"
        pin_path: p/31
        tokens:
          - {path: t/31, system_user_id: "71", scopes: [s]}
          - {path: t/own, system_user_id: "70", scopes: [s]}
      - waba_id: "32"
"""


def test_a_run_resolves_its_own_wabas_ids(tmp_path: Path) -> None:
    settings = registry_dir(tmp_path, TWO_WABAS)
    one = account_for(settings, "31")
    assert (one.business_id, one.app_id, one.waba_id, one.pin(None)) == ("21", "11", "31", "p/31")
    assert one.token(None, None, "x").system_user_id == "71"        # the consumers' token: the first
    assert one.token("t/own", "70", "x").system_user_id == "70"
    with pytest.raises(ConfigError, match="belongs to system user 71"):
        one.token("t/31", "99", "x")                                 # a wrong owner is refused, not used
    with pytest.raises(ConfigError, match="no token at t/other"):
        one.token("t/other", "71", "x")
    two = account_for(settings, "32")
    with pytest.raises(ConfigError, match="no token"):
        two.token(None, None, "leaked-secret")                       # nothing to fall back on
    with pytest.raises(ConfigError, match="no pin_path"):
        two.pin(None)
    with pytest.raises(ConfigError, match="33 is not in"):
        account_for(settings, "33")


def test_without_a_registry_the_settings_business_is_the_only_one(tmp_path: Path) -> None:
    settings = registry_dir(tmp_path, None)
    account = account_for(settings, None)
    assert (account.business_id, account.waba_id) == (settings.meta.business_id, settings.meta.waba_id)
    assert account.tokens == ()                                      # no system user is assumed
    with pytest.raises(ConfigError):
        account_for(settings, "3999999999")


def test_the_registry_refuses_typos_and_duplicates(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="wabas"):
        settings = registry_dir(tmp_path, TWO_WABAS.replace("wabas:", "wabaz:"))
        load_registry(settings.runbooks_dir, settings)
    with pytest.raises(ValueError, match="listed twice"):
        Registry.model_validate(yaml.safe_load(TWO_WABAS.replace('waba_id: "32"', 'waba_id: "31"')))


def test_the_shipped_registry_covers_the_settings_waba() -> None:
    settings = Settings(runbooks_dir=ROOT / "runbooks")
    account = account_for(settings, None)
    assert account.token(None, None, "x").path == "meta/messaging-token"
