"""Webhook overrides are judged by parsed scheme, host, port and path (issue 11 item 9), through the
containment step against the Meta simulator, and by the pure comparison for the look-alikes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.meta import MetaSim
from waguard.meta.simulator.seed import SubscribedAppSeed
from waguard.playbook.effects import Effects
from waguard.playbook.ports import Ports
from waguard.playbook.timeline import IncidentRecord
from waguard.steps.business import is_our_callback, reset_overrides

LOOK_ALIKES = [
    ("https://intake.example.com", "https://intake.example.com.attacker.net/x"),
    ("https://intake.example.com", "https://intake.example.com@attacker.net/webhooks/whatsapp"),
    ("https://intake.example.com", "http://intake.example.com/webhooks/whatsapp"),  # scheme downgrade
    ("https://intake.example.com", "https://intake.example.com:8443/webhooks/whatsapp"),
    ("http://127.0.0.1:8730", "http://127.0.0.1:87301/webhooks/whatsapp"),  # not a port at all
    ("http://127.0.0.1:8730", "http://127.0.0.1:8730.attacker.net/webhooks/whatsapp"),
    ("https://example.com/intake", "https://example.com/intake-evil/webhooks"),
    ("https://example.com/intake", "https://example.com/other"),
    ("https://intake.example.com", "javascript://intake.example.com/"),
]
OURS = [
    ("https://intake.example.com", "https://intake.example.com/webhooks/whatsapp"),
    ("https://intake.example.com", "https://INTAKE.example.com:443/webhooks/whatsapp"),
    ("http://127.0.0.1:8730", "http://127.0.0.1:8730/webhooks/whatsapp"),
    ("https://example.com/intake/", "https://example.com/intake/webhooks/whatsapp"),
]


@pytest.mark.parametrize(("ours", "uri"), LOOK_ALIKES)
def test_a_look_alike_is_foreign(ours: str, uri: str) -> None:
    assert not is_our_callback(uri, ours)


@pytest.mark.parametrize(("ours", "uri"), OURS)
def test_our_own_callback_is_ours(ours: str, uri: str) -> None:
    assert is_our_callback(uri, ours)


@pytest.mark.parametrize(("ours", "uri"), [LOOK_ALIKES[0], LOOK_ALIKES[4]])
async def test_reset_overrides_removes_a_look_alike_override(meta_sim: MetaSim, tmp_path: Path,
                                                             ours: str, uri: str) -> None:
    seed = meta_sim.seed
    app = seed.subscribed_apps[0]
    meta_sim.sim.reset(seed.model_copy(update={"subscribed_apps": [
        SubscribedAppSeed(waba_id=app.waba_id, app_id=app.app_id, app_name=app.app_name,
                          override_callback_uri=uri)]}))
    fx = Effects(False, IncidentRecord(tmp_path, "INC-overrides"), meta_sim.version)
    async with meta_sim.client() as graph:
        report = await reset_overrides(Ports(None, None, graph, None), fx, meta_sim.waba_id, ours)  # type: ignore[arg-type]
        after = await graph.list_subscribed_apps(meta_sim.waba_id)
    assert report.acted == [f"unsubscribed:{meta_sim.waba_id}", f"resubscribed:{meta_sim.waba_id}"]
    assert report.verified and after and all(a.override_callback_uri is None for a in after)


async def test_reset_overrides_leaves_our_own_override_alone(meta_sim: MetaSim, tmp_path: Path) -> None:
    seed = meta_sim.seed
    app = seed.subscribed_apps[0]
    ours = "https://intake.example.com"
    meta_sim.sim.reset(seed.model_copy(update={"subscribed_apps": [
        SubscribedAppSeed(waba_id=app.waba_id, app_id=app.app_id, app_name=app.app_name,
                          override_callback_uri=ours + "/webhooks/whatsapp")]}))
    fx = Effects(False, IncidentRecord(tmp_path, "INC-overrides"), meta_sim.version)
    async with meta_sim.client() as graph:
        report = await reset_overrides(Ports(None, None, graph, None), fx, meta_sim.waba_id, ours)  # type: ignore[arg-type]
    assert report.acted == [] and report.already == [meta_sim.waba_id] and report.verified
