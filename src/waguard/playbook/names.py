"""The playbooks by name: their Prefect flow and deployment names, shared by flows, intake and drills.

The parameters each flow takes are documented on the flow functions in `flows/`; the intake's routing
policy (`runbooks/routing.yaml`) fills them from alerts.
"""

from __future__ import annotations

from waguard.playbook.policy import PLAYBOOKS, Playbook

FLOW_NAMES: dict[Playbook, str] = {p: p.replace("_", "-") for p in PLAYBOOKS}
# Prefect names a deployment "<flow name>/<deployment name>"; ours share the flow's name.
DEPLOYMENTS: dict[Playbook, str] = {p: f"{FLOW_NAMES[p]}/{FLOW_NAMES[p]}" for p in PLAYBOOKS}

# Parameters every playbook takes (see flows/): incident_id (str, the dedup key), severity
# (SEV1|SEV2|SEV3), initiator (who started it: a Slack user id or "intake:<source>"), source (the
# alert that started it), plan (bool: read-only preview), waba_id (default: settings.meta.waba_id).
COMMON_PARAMETERS = ("incident_id", "severity", "initiator", "source", "plan", "waba_id")
