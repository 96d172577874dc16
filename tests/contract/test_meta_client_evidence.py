"""Evidence is taken while Graph is failing (issue 11 item 5): a Graph read that fails past the
client's retry budget is recorded in the bundle as unreadable, with its error type, instead of costing
the snapshot; a burst of 429s and 500s within the budget costs nothing. The Meta simulator serves
Graph over HTTP, OpenBao redacts and signs; the client's sleep and clock are injected (no real waits)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from tests.fixtures.meta import MetaSim
from waguard.evidence import EvidenceSources, write_bundle
from waguard.evidence.manifest import MANIFEST
from waguard.meta.client import GraphClient
from waguard.playbook.policy import EvidencePolicy
from waguard.playbook.timeline import IncidentRecord
from waguard.settings import EvidenceSettings
from waguard.vault.client import VaultClient

EDGES = ["phone_numbers", "templates", "business_users", "system_users", "assigned_users", "subscribed_apps"]


class FakeTime:
    """Monotonic time that moves only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def bundle(meta_sim: MetaSim, graph: GraphClient, vault: VaultClient, vault_prefix: str,
                 tmp_path: Path) -> dict[str, bytes]:
    settings = EvidenceSettings(dir=tmp_path / "evidence", secret_prefixes=[f"{vault_prefix}/"],
                                redaction_key_path=f"{vault_prefix}/redaction-key")
    sources = EvidenceSources(incident_id="INC-graph-down", incident=IncidentRecord(tmp_path, "INC-graph-down"),
                              graph=graph, waba_id=meta_sim.waba_id, business_id=meta_sim.business_id,
                              policy=EvidencePolicy())
    ref = await write_bundle(sources, "open", vault=vault, settings=settings, signing_key="waguard-evidence")
    with tarfile.open(ref.path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


async def test_graph_down_past_the_budget_still_gives_a_bundle_that_says_what_was_unreadable(
        meta_sim: MetaSim, vault: VaultClient, vault_prefix: str, tmp_path: Path) -> None:
    meta_sim.admin.post("/_sim/faults", json={"kind": "http5xx", "seconds": 3600}).raise_for_status()
    clock = FakeTime()
    async with meta_sim.client(max_retries=None, retry_budget_s=60, sleep=clock.sleep, monotonic=clock) as graph:
        members = await bundle(meta_sim, graph, vault, vault_prefix, tmp_path)
    unreadable = json.loads(members["meta/unreadable.json"])
    assert sorted(unreadable) == sorted(EDGES)
    assert {v["error"] for v in unreadable.values()} == {"MetaTransient"}
    assert not [n for n in members if n.startswith("meta/") and n != "meta/unreadable.json"]
    manifest = json.load(io.BytesIO(members[MANIFEST]))
    assert sum(e.startswith("meta:") and "MetaTransient" in e for e in manifest["errors"]) == len(EDGES)
    # Every read was retried within its budget before it was given up (6 edges, several tries each).
    graph_calls = [r for r in meta_sim.requests() if not r["path"].startswith("/_sim")]
    assert len(graph_calls) > 2 * len(EDGES)


async def test_a_burst_of_429s_and_500s_is_waited_out_and_every_edge_read(
        meta_sim: MetaSim, vault: VaultClient, vault_prefix: str, tmp_path: Path) -> None:
    for kind in ("http429", "http5xx"):  # what `waguard drill --fault graph-429 --fault graph-5xx` arms
        meta_sim.admin.post("/_sim/faults", json={"kind": kind, "count": 3}).raise_for_status()
    clock = FakeTime()
    async with meta_sim.client(max_retries=None, retry_budget_s=120, sleep=clock.sleep, monotonic=clock) as graph:
        members = await bundle(meta_sim, graph, vault, vault_prefix, tmp_path)
    assert "meta/unreadable.json" not in members
    assert all(f"meta/{edge}.json" in members for edge in EDGES)
    assert meta_sim.admin.get("/_sim/faults").json()["faults"] == []  # all six faults met and survived
