"""The parameters each playbook flow takes, as models the intake builds every run request through.

A closed, typed registry (style-anchors pattern 8): routing policy may only name parameters that exist
here, with values of the right type, and what the intake sends to Prefect always validates. Parameters
carry ids and Vault paths, never a secret value or a clear phone number (Prefect stores them in plain
text): numbers travel as Graph phone-number ids.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from waguard.playbook.policy import Playbook, Severity

INCIDENT_ID_MAX = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")
SEVERITY_RANK: dict[Severity, int] = {"SEV1": 1, "SEV2": 2, "SEV3": 3}

# Set by the intake itself from the delivery; routing policy may not override them.
MANAGED = frozenset({"incident_id", "severity", "initiator", "source"})


class CommonParameters(BaseModel):
    """What every playbook flow takes."""

    model_config = {"extra": "forbid"}

    incident_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    severity: Severity
    initiator: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=300)
    plan: bool = False
    waba_id: str | None = Field(None, pattern=r"^[0-9]{1,32}$")


class LeakedSecretParameters(CommonParameters):
    leaked: Literal["app_secret", "token", "both"] = "both"
    leaked_token_path: str | None = None


class TemplateAbuseParameters(CommonParameters):
    template_names: list[str] = Field(default_factory=list)
    statuses: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    deregister_numbers: list[str] = Field(default_factory=list)


class AccountTakeoverParameters(CommonParameters):
    phone_number_ids: list[str] = Field(default_factory=list)
    suspect_users: list[str] = Field(default_factory=list)


PARAMETER_MODELS: dict[Playbook, type[CommonParameters]] = {
    "leaked_secret": LeakedSecretParameters,
    "template_abuse": TemplateAbuseParameters,
    "account_takeover": AccountTakeoverParameters,
}


def settable(playbook: Playbook) -> dict[str, bool]:
    """Parameter names routing policy may set for `playbook`, each with whether it is a list."""
    fields = PARAMETER_MODELS[playbook].model_fields
    return {name: "list[" in str(f.annotation) for name, f in fields.items() if name not in MANAGED}


def incident_id(key: str) -> str:
    """An incident key made safe for `incident_id`: [A-Za-z0-9._:-], at most 128 characters.

    Longer keys keep a readable prefix and end in a hash of the whole key, so two long keys that
    share a prefix still differ.
    """
    safe = _UNSAFE.sub("-", key).strip("-") or "incident"
    if len(safe) <= INCIDENT_ID_MAX:
        return safe
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return safe[: INCIDENT_ID_MAX - 17] + "." + digest


def build_parameters(playbook: Playbook, values: dict[str, Any]) -> dict[str, Any]:
    """Validate a run's parameters for `playbook` and return them as the flow receives them.

    Raises:
        pydantic.ValidationError: a parameter is unknown or has the wrong type.
    """
    # Unset optional parameters are left out, so the flow's own defaults apply (a None would be
    # refused by Prefect for a parameter typed `str`).
    return PARAMETER_MODELS[playbook].model_validate(values).model_dump(mode="json", exclude_none=True)


def worst(severities: list[Severity], default: Severity) -> Severity:
    """The most severe of `severities` (SEV1 is worst), or `default` when there are none."""
    return min(severities, key=SEVERITY_RANK.__getitem__) if severities else default
