"""The drill's canary scan on the real local stack: clean as started, and a secret planted in a Slack
message (base64) is found there and nowhere else."""

import base64
import secrets as pysecrets

import httpx
import pytest

from waguard.drills.canary import scan_everywhere, vault_secret_values
from waguard.vault.client import VaultClient

pytestmark = pytest.mark.usefixtures("local_stack")

PREFIXES = ["meta/", "slack/", "intake/", "waguard/"]


async def test_the_stack_is_clean_and_a_planted_slack_message_is_found(local_stack) -> None:
    settings = local_stack.settings
    vault = VaultClient.from_settings(settings.vault)
    values = await vault_secret_values(vault, PREFIXES)
    assert len(values) >= 6  # the stack's credentials (Meta, Slack, intake, redaction key)

    async def scan():  # noqa: ANN202
        return await scan_everywhere(settings, values, meta_url=local_stack.meta, slack_url=local_stack.slack,
                                     prefect_home=settings.stack.home / "prefect")

    clean = await scan()
    assert clean.hits == [], str(clean)
    assert clean.secrets == len(values) and clean.places >= 8 and clean.bytes_scanned > 0

    index, planted = next((i, v) for i, v in enumerate(values) if len(v) >= 8)
    channel = "C0CANARY" + pysecrets.token_hex(4).upper()
    bot_token = (await vault.read_secret(settings.slack.bot_token_path)).value.get_secret_value()
    try:
        async with httpx.AsyncClient(base_url=local_stack.slack) as http:
            assert (await http.post("/_sim/channels", json={"id": channel})).json()["ok"]
            answer = await http.post("/api/chat.postMessage", headers={"Authorization": f"Bearer {bot_token}"},
                                     json={"channel": channel,
                                           "text": "leaked: " + base64.b64encode(planted.encode()).decode()})
            assert answer.json()["ok"], answer.json().get("error")
        report = await scan()
    finally:
        assert httpx.post(f"{local_stack.slack}/_sim/reset").json()["ok"]  # later scans must not see it
    assert report.hits, str(report)
    assert {h.where for h in report.hits} <= {"slack:messages", "slack:requests"}, str(report)
    assert "slack:messages" in {h.where for h in report.hits}
    assert {(h.encoding, h.secret_ref) for h in report.hits} == {
        ("base64", f"secret#{index} ({len(planted)} chars)")}
    assert all(planted not in str(h) for h in report.hits)
