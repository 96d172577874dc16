"""The snapshot-evidence task on a real Prefect server and a real OpenBao: the run's own logs are collected
(redacted), the bundle is on the timeline and in an artifact, and a replayed "open" is not written twice."""

from __future__ import annotations

import json
import secrets
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from pydantic import SecretStr

from tests.fixtures.vault import OpenBao
from waguard.evidence import verify_bundle
from waguard.playbook.policy import PlaybookPolicy
from waguard.playbook.timeline import IncidentRecord
from waguard.settings import EvidenceSettings, IntakeSettings, Settings, VaultSettings
from waguard.steps.evidence import artifact_key, snapshot_evidence
from waguard.vault.client import VaultClient

pytestmark = pytest.mark.usefixtures("prefect_server")


class Ports:
    def __init__(self, vault: VaultClient) -> None:
        self.vault, self.evidence_vault, self.graph, self.slack = vault, vault, None, None


@dataclass
class Run:
    """The attributes of waguard.playbook.run.PlaybookRun that the task reads."""

    incident_id: str
    incident: IncidentRecord
    settings: Settings
    policy: PlaybookPolicy
    ports: Any
    run_id: UUID
    playbook: str = "leaked_secret"
    severity: str = "SEV2"
    evidence: list[Any] = field(default_factory=list)


@flow(name="evidence-under-test")
async def snapshots(root: str, vault_json: str, prefix: str, phone: str, secret_path: str) -> list[dict]:
    vault_settings = VaultSettings.model_validate_json(vault_json)
    settings = Settings(vault=vault_settings, incidents_dir=Path(root) / "incidents",
                        intake=IntakeSettings(state_dir=Path(root) / "intake"),
                        evidence=EvidenceSettings(dir=Path(root) / "evidence", redaction_key_path=f"{prefix}/rk",
                                                  secret_prefixes=[f"{prefix}/"]))
    vault = VaultClient.from_settings(vault_settings)
    try:
        secret = (await vault.read_secret(secret_path)).value.get_secret_value()
        # Exactly what must never happen, so evidence must cope: a secret and a number in a run log.
        get_run_logger().warning("debug dump token=%s customer=%s", secret, phone)
        incident = IncidentRecord(settings.incidents_dir, "INC-PF-1")
        run = Run("INC-PF-1", incident, settings,
                  PlaybookPolicy(playbook="leaked_secret", approvers=["U1"]), Ports(vault), UUID(flow_run.id))
        first = await snapshot_evidence(run, "open", extra={"alert": {"phone": phone}})
        replay = await snapshot_evidence(run, "open")
        close = await snapshot_evidence(run, "close")
        return [first.model_dump(), replay.model_dump(), close.model_dump()]
    finally:
        vault.close()


async def test_snapshot_task_collects_the_runs_logs_redacted_and_links_the_bundle(
        openbao: OpenBao, vault: VaultClient, vault_prefix: str, tmp_path: Path) -> None:
    secret = "tok-" + secrets.token_urlsafe(20)
    await vault.write_secret(f"{vault_prefix}/meta/token", SecretStr(secret))
    phone = "+15550107777"
    first, replay, close = await snapshots(str(tmp_path), openbao.settings.model_dump_json(), vault_prefix, phone,
                                           f"{vault_prefix}/meta/token")
    assert first == replay and close["path"] != first["path"] and close["phase"] == "close"

    key = (tmp_path / "evidence" / "waguard-evidence.pub.pem").read_bytes()  # refreshed by every bundle
    for ref in (first, close):
        report = verify_bundle(Path(ref["path"]), key, expected_sha256=ref["sha256"])
        assert report.ok, report.failure
    with tarfile.open(close["path"], "r:gz") as tar:
        content = {m.name: tar.extractfile(m).read().decode() for m in tar}  # type: ignore[union-attr]
    logs = [json.loads(line) for line in content["prefect/flow-run-logs.jsonl"].splitlines()]
    dump = [entry["message"] for entry in logs if "debug dump" in entry["message"]]
    assert dump and "[secret:" in dump[0] and "[tel:" in dump[0]
    for blob in content.values():
        assert secret not in blob and "15550107777" not in blob
    timeline = [json.loads(line) for line in content["timeline.jsonl"].splitlines()]
    assert [r["target"] for r in timeline if r["step"] == "snapshot-evidence"] == ["evidence:open"]

    incident = IncidentRecord(tmp_path / "incidents", "INC-PF-1")
    assert [e.target for e in incident.events() if e.step == "snapshot-evidence"] == ["evidence:open",
                                                                                       "evidence:close"]
    async with get_client() as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key("INC-PF-1", "close")])))
    assert found and close["path"] in str(found[0].data) and close["sha256"] in str(found[0].data)
