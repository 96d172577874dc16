"""Drill scenarios: the files in `runbooks/drills/`, validated (unknown keys are errors).

A scenario says what the world looks like before the incident (changes to the demo business), the
signal that reveals it, what the stand-in responder does, the end state an independent check must
find, and the objectives it is scored against. It names ids and never a secret value: the drill
generates every credential fresh, like the stack does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from waguard.errors import ConfigError
from waguard.playbook.policy import load_yaml_model

Source = Literal["github", "meta", "alertmanager"]
Check = Literal[
    "templates_absent",        # these template ids are gone from the WABA
    "templates_present",       # these are still there (nothing else was deleted)
    "app_secret_rotated",      # old secret's appsecret_proof rejected, Vault's current one accepted
    "tokens_invalid",          # every token seeded for these users is invalid by debug_token
    "vault_token_valid",       # the token now at this Vault path is valid by debug_token
    "only_business_users",     # exactly these business users remain
    "overrides_ours",          # no subscription points anywhere but the intake
    "numbers_deregistered",    # these numbers are unregistered
    "pin_rotated",             # these numbers' PIN changed, and Vault's PIN is the one Meta has
    "attacker_locked_out",     # the attacker's tokens can no longer read the WABA (code 200 / 190)
    "old_secret_webhooks_windowed",  # webhooks signed with the old secret: accepted, for at most ids[0] s
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Signal(_Model):
    """What reveals the incident, sent to the intake over HTTP with the source's real signature."""

    source: Source
    payload: dict[str, Any] = Field(description="The delivery body; Meta payloads are signed by the simulator.")


class Responder(_Model):
    """The stand-in responder: who clicks Approve in Slack, and which dashboard-only steps they do."""

    approvers: list[str] = Field(min_length=1, description="Slack user ids, in the order they click.")
    dashboard_steps: list[Literal["reset-app-secret"]] = Field(default_factory=list)


class Expectation(_Model):
    check: Check
    ids: list[str] = Field(default_factory=list, description="Object ids, users or a Vault path.")


class Objectives(_Model):
    time_to_contain_s: float = Field(gt=0, description="Alert received -> last containment step verified.")
    detection_s: float = Field(gt=0, description="Alert received -> the run started.")


class Attacker(_Model):
    """What the attacker holds: tokens issued to these users during the drill (canaries too)."""

    tokens_for: list[str] = Field(default_factory=list)


class Scenario(_Model):
    name: str = Field(pattern=r"^[a-z0-9-]{3,64}$")
    playbook: Literal["leaked-secret", "template-abuse", "account-takeover"]
    description: str
    seed: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict,
        description="Changes to the demo business: per Seed list, items added (or replacing the same id).")
    attacker: Attacker = Field(default_factory=Attacker)
    signal: Signal
    responder: Responder
    expect: list[Expectation] = Field(min_length=1)
    objectives: Objectives


def load_scenarios(directory: Path) -> dict[str, Scenario]:
    """Every `*.yaml` in `directory`, by name; a bad file is a ConfigError naming it."""
    if not directory.is_dir():
        raise ConfigError(f"no drill scenarios: {directory} is not a directory (WAGUARD_RUNBOOKS_DIR)")
    scenarios: dict[str, Scenario] = {}
    for path in sorted(directory.glob("*.yaml")):
        scenario = load_yaml_model(path, Scenario, "drill scenario")
        if scenario.name != path.stem:
            raise ConfigError(f"{path}: name {scenario.name!r} differs from the file name {path.stem!r}")
        scenarios[scenario.name] = scenario
    return scenarios


def select(scenarios: dict[str, Scenario], names: list[str], everything: bool) -> list[Scenario]:
    """The scenarios asked for, in the order given (all of them, by name, with --all)."""
    if everything:
        return list(scenarios.values())
    if not names:
        raise ConfigError("name at least one scenario or pass --all; known: " + ", ".join(scenarios))
    unknown = [n for n in names if n not in scenarios]
    if unknown:
        raise ConfigError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(scenarios)}")
    return [scenarios[n] for n in names]
