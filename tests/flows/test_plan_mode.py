"""Plan mode is the safe first contact with a live account: a `plan: true` run makes only Graph GETs.

The run goes through the same GraphClient the live mode uses, in-process against the local stack's
real Prefect server and OpenBao. respx stands between that client and Graph: GETs pass through to the
Meta simulator, every other method is refused (405) and recorded. The simulator's own request record,
Vault's versions and the Slack simulator are read back independently.
"""

from urllib.parse import urlsplit

import httpx
import pytest
import respx

from flows.account_takeover import account_takeover
from flows.leaked_secret import leaked_secret
from flows.template_abuse import template_abuse

pytestmark = pytest.mark.usefixtures("local_stack")


def graph_gate(meta_url: str) -> tuple[respx.MockRouter, list[str]]:
    """respx in front of Graph: GET passes, anything else is refused and recorded; other hosts pass."""
    url = urlsplit(meta_url)
    refused: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        refused.append(f"{request.method} {request.url.path}")
        return httpx.Response(405, json={"error": {"message": "plan mode test: only GET", "code": 1}})

    router = respx.mock(assert_all_called=False)
    router.route(method="GET", host=url.hostname, port=url.port).pass_through()
    router.route(host=url.hostname, port=url.port).mock(side_effect=refuse)
    router.route().pass_through()  # the Prefect API and everything else
    return router, refused


async def vault_versions(local_stack, paths: list[str]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    from waguard.vault.client import VaultClient
    from waguard.vault.errors import VaultSecretNotFound

    out: dict[str, int] = {}
    async with VaultClient.from_settings(local_stack.settings.vault) as vault:
        for path in paths:
            try:
                out[path] = (await vault.read_metadata(path)).current_version
            except VaultSecretNotFound:
                out[path] = 0
    return out


@pytest.mark.parametrize("playbook", ["account_takeover", "leaked_secret", "template_abuse"])
async def test_a_plan_run_makes_only_graph_gets(local_stack, playbook: str) -> None:  # type: ignore[no-untyped-def]
    flows = {"account_takeover": lambda: account_takeover(incident_id=f"INC-PLAN-{playbook}", plan=True),
             "leaked_secret": lambda: leaked_secret(incident_id=f"INC-PLAN-{playbook}", plan=True),
             "template_abuse": lambda: template_abuse(incident_id=f"INC-PLAN-{playbook}", plan=True,
                                                      statuses=["APPROVED"])}
    watched = ["meta/two-step-pin", "meta/messaging-token", "meta/app-secret", "waguard/app-secret-rotation"]
    before_vault = await vault_versions(local_stack, watched)
    seen = len(local_stack.meta_requests())
    slack_before = local_stack.slack_messages()
    router, refused = graph_gate(local_stack.meta)
    with router:
        result = await flows[playbook]()
    assert result["status"] == "planned", result
    assert refused == []
    assert result["planned_calls"], "a plan that lists nothing proves nothing"
    made = local_stack.meta_requests()[seen:]
    assert made and {r["method"] for r in made} == {"GET"}, made
    assert await vault_versions(local_stack, watched) == before_vault
    assert local_stack.slack_messages() == slack_before


async def test_the_gate_refuses_what_a_live_run_sends(local_stack) -> None:  # type: ignore[no-untyped-def]
    """The same gate around a Graph write: refused and recorded (so the test above can fail)."""
    from pydantic import SecretStr

    from waguard.meta.client import GraphClient

    router, refused = graph_gate(local_stack.meta)
    graph = GraphClient.from_settings(local_stack.settings.meta.model_copy(update={"retry_budget_s": 0}),
                                      token=SecretStr("EAAG-x"), app_secret=SecretStr("s"))
    with router:
        with pytest.raises(Exception):  # noqa: B017 - which MetaError does not matter here
            await graph.deregister_phone_number("5000000001")
    await graph.aclose()
    assert refused == ["POST /v23.0/5000000001/deregister"]
