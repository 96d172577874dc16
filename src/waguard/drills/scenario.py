"""Drill scenarios: the files in `runbooks/drills/`, validated (unknown keys are errors).

A scenario says what the world looks like before the incident (changes to the demo business), the
signal that reveals it, what the stand-in responder does, the end state an independent check must
find, and the objectives it is scored against. It names ids and never a secret value: the drill
generates every credential fresh, like the stack does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    "nothing_changed",         # no mutating Graph call reached the simulator (a storm started nothing)
    "tokens_young",            # the tokens at these Vault paths are valid, expiring, younger than policy
    "consumer_no_failed_calls",  # the consumer reading Vault through the run: calls made, none failed
]
Deployment = Literal["credential-rotation", "posture-audit"]
Scored = Literal["leaked-secret", "template-abuse", "account-takeover", "credential-rotation"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Signal(_Model):
    """What reveals the incident, sent to the intake over HTTP with the source's real signature."""

    source: Source
    payload: dict[str, Any] = Field(
        description="The delivery body; Meta payloads are signed by the simulator."
    )


class Webhook(_Model):
    """One Meta webhook the simulator delivers during a behaviour, signed as `signature` says."""

    payload: dict[str, Any] = Field(
        description='Meta payload; "{n}" in a string becomes the delivery number.')
    signature: Literal["valid", "wrong"] = "valid"
    every_s: float | None = Field(
        None, gt=0, description="Repeat until the alert reaches the intake; once if unset.")


class Behaviour(_Model):
    """An anomaly with no alert of its own: webhooks the Meta simulator really delivers to the intake,
    until Prometheus (the shipped rules) fires `alert` and Alertmanager delivers it to the intake."""

    alert: str = Field(pattern=r"^[A-Z][A-Za-z0-9]{2,80}$", description="The shipped rule's alert name.")
    webhooks: list[Webhook] = Field(min_length=1)
    timeout_s: float = Field(900, gt=0, description="Give up waiting for the alert after this long.")


class Start(_Model):
    """A scheduled deployment started as its schedule would (nothing alerted), optionally beside a
    consumer that reads its token from Vault before every Graph call for the whole run."""

    deployment: Deployment
    parameters: dict[str, Any] = Field(default_factory=dict, description="The run's parameters.")
    then: Literal["account-takeover"] | None = Field(
        None, description="The playbook run the deployment's alert starts through the intake (the one "
        "scored); unset: the deployment's own run is scored.")
    consumer: str | None = Field(None, min_length=1, description="Vault path a consumer reads throughout.")


class Responder(_Model):
    """The stand-in responder: who clicks Approve in Slack, and which dashboard-only steps they do."""

    approvers: list[str] = Field(min_length=1, description="Slack user ids, in the order they click.")
    dashboard_steps: list[Literal["reset-app-secret"]] = Field(default_factory=list)


class Expectation(_Model):
    check: Check
    ids: list[str] = Field(default_factory=list, description="Object ids, users or a Vault path.")


class Objectives(_Model):
    """Seconds from the anomaly's start (the signal's send, or a behaviour's first webhook)."""

    time_to_contain_s: float | None = Field(None, gt=0, description="-> last containment step verified.")
    detection_s: float | None = Field(None, gt=0, description="-> the run started.")
    detected_s: float | None = Field(
        None, gt=0, description="-> the alert received by the intake (behaviours).")


class Attacker(_Model):
    """What the attacker holds: tokens issued to these users during the drill (canaries too)."""

    tokens_for: list[str] = Field(default_factory=list)


class Scenario(_Model):
    name: str = Field(pattern=r"^[a-z0-9-]{3,64}$")
    playbook: Scored | None = Field(
        None, description="The run scored: the one the signal starts, or the started deployment's (or its "
        "alert's) run; unset: the alert must start nothing.")
    description: str
    seed: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict,
        description="Changes to the demo business: per Seed list, items added (or replacing the same id).")
    attacker: Attacker = Field(default_factory=Attacker)
    signal: Signal | None = None
    behaviour: Behaviour | None = None
    start: Start | None = None
    responder: Responder
    expect: list[Expectation] = Field(min_length=1)
    objectives: Objectives

    @model_validator(mode="after")
    def _one_trigger(self) -> Scenario:
        if [self.signal, self.behaviour, self.start].count(None) != 2:
            raise ValueError("give exactly one of signal (an alert), behaviour (an anomaly the rules "
                             "detect) or start (a scheduled deployment)")
        if self.playbook is None and self.behaviour is None:
            raise ValueError("a scenario without a playbook is a behaviour whose alert must start nothing")
        if self.start is not None and (self.start.then or self.start.deployment) != self.playbook:
            raise ValueError(f"start: the scored run is {self.start.then or self.start.deployment!r} "
                             f"(start.then, else start.deployment), but playbook is {self.playbook!r}")
        if self.start is None and self.playbook == "credential-rotation":
            raise ValueError("credential-rotation is a scheduled deployment: give start, not an alert")
        if any(e.check == "consumer_no_failed_calls" for e in self.expect) and not (
                self.start and self.start.consumer):
            raise ValueError("consumer_no_failed_calls needs start.consumer (a consumer to measure)")
        return self


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
