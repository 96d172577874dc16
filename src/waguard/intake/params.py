"""How the intake builds a run's parameters: the playbooks' own parameter models
(`waguard.playbook.parameters`, the one definition the flows' signatures come from), plus what the
intake itself sets from the delivery.

A closed, typed registry (style-anchors pattern 8): routing policy may only name parameters that exist
there, with values of the right type, and what the intake sends to Prefect always validates. Parameters
carry ids and Vault paths, never a secret value or a clear phone number (Prefect stores them in plain
text): numbers travel as Graph phone-number ids.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pydantic import ValidationError

from waguard.playbook.parameters import PARAMETER_MODELS
from waguard.playbook.policy import Playbook, Severity

__all__ = ["MANAGED", "PARAMETER_MODELS", "build_parameters", "incident_id", "settable", "worst"]

INCIDENT_ID_MAX = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")
SEVERITY_RANK: dict[Severity, int] = {"SEV1": 1, "SEV2": 2, "SEV3": 3}

# Set by the intake itself from the delivery; routing policy may not override them, every run has them.
MANAGED = frozenset({"incident_id", "severity", "initiator", "source"})


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
    model = PARAMETER_MODELS[playbook]
    missing = sorted(name for name in MANAGED if values.get(name) is None)
    if missing:  # the flow would accept them empty; a run the intake starts always has them
        raise ValidationError.from_exception_data(model.__name__, [
            {"type": "missing", "loc": (name,), "input": values} for name in missing])
    # Every parameter is sent, defaults and empties included: Prefect fills a parameter a run leaves out
    # from the deployment's Quick-run values (prefect.yaml, e.g. template-abuse's statuses), which are for
    # people in the UI, never for an alert's run.
    return model.model_validate(values).model_dump(mode="json")


def worst(severities: list[Severity], default: Severity) -> Severity:
    """The most severe of `severities` (SEV1 is worst), or `default` when there are none."""
    return min(severities, key=SEVERITY_RANK.__getitem__) if severities else default
