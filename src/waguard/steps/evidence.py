"""The evidence task the playbooks call before their first containment step ("open") and after the last
("close"): a name in the UI, retries for what is worth retrying, a timeline entry and a Prefect artifact
with the bundle's path and digest, then one call into `waguard.evidence.write_bundle`.

Returns a `BundleRef` (a path and digests; no secret, no PII). A suspended run replays its flow from
the top, so an "open" bundle this same flow run already wrote is returned instead of written again; any
other run of the incident (a re-run, a follow-up) takes its own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from waguard.errors import only_retryable
from waguard.evidence import BundleRef, EvidenceSources, Phase, write_bundle
from waguard.playbook.policy import PlaybookPolicy
from waguard.playbook.timeline import IncidentTimeline
from waguard.settings import Settings
from waguard.state.backends import open_audit_reader

STEP = "snapshot-evidence"


class EvidenceRun(Protocol):
    """What the task reads from a playbook run (waguard.playbook.run.PlaybookRun has all of it)."""

    incident_id: str
    incident: IncidentTimeline
    settings: Settings
    policy: PlaybookPolicy
    ports: Any  # .evidence_vault, .graph, .slack
    run_id: UUID


def artifact_key(incident_id: str, phase: Phase) -> str:
    """Artifact keys are lower-case letters, digits and dashes."""
    return "evidence-" + re.sub(r"[^a-z0-9-]+", "-", incident_id.lower()).strip("-") + f"-{phase}"


def artifact_markdown(incident_id: str, ref: BundleRef) -> str:
    return (f"# Evidence bundle ({ref.phase}) for {incident_id}\n\n"
            f"| | |\n|---|---|\n| path | `{ref.path}` |\n| sha256 | `{ref.sha256}` |\n"
            f"| manifest sha256 | `{ref.manifest_sha256}` |\n| signing key version | {ref.key_version} |\n\n"
            f"Verify offline: `waguard evidence verify {ref.path} --sha256 {ref.sha256}`\n")


async def _thread(run: EvidenceRun) -> tuple[list[dict[str, Any]], str | None]:
    """The incident's Slack thread, if it has one; a failure is noted, never fatal."""
    head = getattr(getattr(run, "slack", None), "head", None)
    slack = getattr(run.ports, "slack", None)
    if head is None or slack is None:
        return [], None
    try:
        return list(await slack.thread(head)), None
    except Exception as err:  # noqa: BLE001 - evidence without the thread beats no evidence
        return [], type(err).__name__


def sources_for(run: EvidenceRun, slack_messages: list[dict[str, Any]],
                extra: dict[str, Any], waba_id: str | None = None) -> EvidenceSources:
    """The sources of one playbook run's bundle: the run's own business and WABA (`run.account`, a
    `waguard.playbook.accounts.Account`)."""
    settings = run.settings
    account = getattr(run, "account", None)  # a run without one (a bare evidence run): the settings' own
    return EvidenceSources(
        incident_id=run.incident_id, incident=run.incident, graph=getattr(run.ports, "graph", None),
        waba_id=waba_id or (account.waba_id if account else settings.meta.waba_id),
        business_id=account.business_id if account else settings.meta.business_id, policy=run.policy.evidence,
        intake_audit=open_audit_reader(settings), flow_run_ids=[run.run_id],
        slack_messages=slack_messages, extra=extra)


@task(
    name=STEP, cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 3], retry_condition_fn=only_retryable
)
async def snapshot_evidence(
    run: EvidenceRun, phase: Phase, extra: dict[str, Any] | None = None, waba_id: str | None = None
) -> BundleRef:
    """Write (or, for "open", find) the incident's evidence bundle; record it on the timeline and as an
    artifact.

    Args:
        run: the playbook run (its incident, settings, policy, ports and flow-run id).
        phase: "open" before the first containment step, "close" after the last.
        extra: small facts to record, e.g. the alert payload (redacted like everything else).
        waba_id: the WABA whose state to collect, when the run acts on another than the settings'.
    """
    target = f"evidence:{phase}"
    if phase == "open":
        done = run.incident.last(STEP, "done", target=target)
        if (done is not None and done.data.get("flow_run_id") == str(run.run_id)
                and Path(done.data.get("path", "")).is_file()):
            return BundleRef.model_validate({k: v for k, v in done.data.items() if k != "flow_run_id"})
    messages, slack_error = await _thread(run)
    facts = {"playbook": getattr(run, "playbook", None), "severity": getattr(run, "severity", None),
             "flow_run_id": str(run.run_id), **(extra or {})}
    if slack_error:
        facts["slack_thread_error"] = slack_error
    settings = run.settings
    ref = await write_bundle(
        sources_for(run, messages, facts, waba_id),
        phase,
        vault=run.ports.evidence_vault,
        settings=settings.evidence,
        signing_key=settings.vault.evidence_key,
    )
    run.incident.append(STEP, "done", ref.summary_line(), target=target,
                        data={**ref.model_dump(), "flow_run_id": str(run.run_id)})
    await acreate_markdown_artifact(key=artifact_key(run.incident_id, phase),
                                    markdown=artifact_markdown(run.incident_id, ref),
                                    description=f"Evidence bundle ({phase}) for {run.incident_id}")
    return ref
