"""Whether the bot can post in a channel, asked without posting (conversations.info), as `waguard
doctor` asks it; the simulator refuses a post where the bot was not invited, as Slack does."""

from __future__ import annotations

import httpx
import pytest

from waguard.slack.blocks import IncidentView
from waguard.slack.errors import SlackError, SlackNotFound


def uninvite(slack_sim, channel: str) -> None:
    httpx.post(f"{slack_sim.url}/_sim/channels", json={"id": channel, "member": False}).raise_for_status()


async def test_membership_is_read_without_posting(slack_sim, slack_client) -> None:
    uninvite(slack_sim, "C0UNINVITED")
    assert await slack_client.is_member("C0INCIDENT") is True
    assert await slack_client.is_member("C0UNINVITED") is False
    with pytest.raises(SlackNotFound):
        await slack_client.is_member("C0NOSUCH")
    assert not any(slack_sim.state.messages().values())
    assert {r["method"] for r in slack_sim.state.requests()} == {"conversations.info"}


async def test_a_post_where_the_bot_was_not_invited_is_refused(slack_sim, slack_client) -> None:
    uninvite(slack_sim, "C0UNINVITED2")
    view = IncidentView(incident_id="INC-M1", playbook="template-abuse", title="t", severity="SEV2",
                        state="open", prefect_run_url="http://127.0.0.1/runs/x")
    with pytest.raises(SlackError) as refused:
        await slack_client.open_incident("C0UNINVITED2", view)
    assert refused.value.error == "not_in_channel"
    httpx.post(f"{slack_sim.url}/_sim/channels", json={"id": "C0UNINVITED2"}).raise_for_status()  # /invite
    assert await slack_client.is_member("C0UNINVITED2") is True
    await slack_client.open_incident("C0UNINVITED2", view)


def test_the_admin_route_refuses_a_bad_member_flag(slack_sim) -> None:
    r = httpx.post(f"{slack_sim.url}/_sim/channels", json={"id": "C0X", "member": "no"})
    assert r.status_code == 400
