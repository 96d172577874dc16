"""The playbooks by name: their Prefect flow and deployment names, shared by flows, intake and drills.

The parameters each flow takes are defined once in `waguard.playbook.parameters`; the intake's routing
policy (`runbooks/routing.yaml`) fills them from alerts.
"""

from __future__ import annotations

from waguard.playbook.policy import PLAYBOOKS, Playbook

FLOW_NAMES: dict[Playbook, str] = {p: p.replace("_", "-") for p in PLAYBOOKS}
# Prefect names a deployment "<flow name>/<deployment name>"; ours share the flow's name.
DEPLOYMENTS: dict[Playbook, str] = {p: f"{FLOW_NAMES[p]}/{FLOW_NAMES[p]}" for p in PLAYBOOKS}

