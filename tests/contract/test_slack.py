"""SlackClient (slack_sdk's real AsyncWebClient) against the Slack simulator served over real HTTP."""

from __future__ import annotations

import json
import logging
import pickle
import traceback
import uuid

import httpx
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import SecretStr
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from tests.fixtures.slack import SlackSim
from waguard.errors import Retryable
from waguard.local.processes import ServedApp, free_port
from waguard.settings import SlackSettings
from waguard.slack import blocks as bk
from waguard.slack.client import MessageRef, RateLimitRetry, SlackClient, retry_after_seconds
from waguard.slack.errors import (
    SlackAuthError,
    SlackError,
    SlackNotFound,
    SlackRateLimited,
    SlackUnavailable,
)
from waguard.slack.sim_state import SimState
from waguard.slack.simulator import create_app

CHANNEL = "C0INCIDENT"


def view(state: str = "open", steps: tuple[bk.StepLine, ...] = ()) -> bk.IncidentView:
    return bk.IncidentView(incident_id="inc-7", playbook="template_abuse",
                           title="Phishing templates submitted", severity="SEV2", state=state,
                           current_step="snapshot-templates", steps=steps,
                           prefect_run_url="http://127.0.0.1:4200/runs/flow-run/1")


def approval(nonce: str = "nonce-0001") -> bk.ApprovalRequest:
    return bk.ApprovalRequest(run_id=uuid.UUID("0d6f8a9e-1b2c-4d3e-8f40-5a6b7c8d9e0f"),
                              step="delete-templates", nonce=nonce, summary="Delete *3* templates.",
                              destructive=("delete template promo_1",))


def client_for(sim: SlackSim, **kw: object) -> SlackClient:
    return SlackClient(SecretStr(sim.token), api_url=sim.api_url, **kw)  # type: ignore[arg-type]


def statuses(sim: SlackSim, method: str) -> list[int]:
    return [r["status"] for r in sim.state.requests(method)]


# ---- the incident thread -----------------------------------------------------------------------------

async def test_auth_test(slack_client: SlackClient) -> None:
    me = await slack_client.auth_test()
    assert (me.team_id, me.user_id) == ("T0WAGUARD", "U0WAGUARDBOT")


async def test_incident_thread_end_to_end(slack_client: SlackClient, slack_sim: SlackSim) -> None:
    ref = await slack_client.open_incident(CHANNEL, view())
    assert ref.channel == CHANNEL and ref.thread_ts is None
    stored = slack_sim.state.message(CHANNEL, ref.ts)
    assert stored is not None and stored["blocks"] == bk.incident_blocks(view())
    assert stored["text"] == bk.incident_text(view())

    note = await slack_client.reply(ref, "Evidence snapshot taken.")
    assert note.thread_ts == ref.ts and note.ts > ref.ts

    contained = view("contained", (bk.StepLine(step="snapshot-templates", outcome="done"),))
    await slack_client.update_incident(ref, contained)
    updated = slack_sim.state.message(CHANNEL, ref.ts)
    assert updated is not None and updated["blocks"] == bk.incident_blocks(contained) and "edited" in updated

    req = approval()
    ask = await slack_client.post_approval(note, req)  # a reply's ref still lands in the incident thread
    assert ask.thread_ts == ref.ts
    posted = slack_sim.state.message(CHANNEL, ask.ts)
    assert posted is not None
    values = [el["value"] for b in posted["blocks"] if b["type"] == "actions" for el in b["elements"]]
    assert len(values) == 2
    assert {bk.parse_button_value(v) for v in values} == {
        bk.ButtonValue(run=req.run_id, step=req.step, nonce=req.nonce)}

    await slack_client.mark_decided(ask, req, "approved", "U012ONCALL")
    decided = slack_sim.state.message(CHANNEL, ask.ts)
    assert decided is not None
    assert not any(b["type"] == "actions" for b in decided["blocks"])
    assert "Approved* by <@U012ONCALL>" in decided["blocks"][-1]["text"]["text"]

    thread = await slack_client.thread(ref)
    assert [m["ts"] for m in thread] == [ref.ts, note.ts, ask.ts]
    assert thread[0]["reply_count"] == 2
    assert thread[2]["blocks"] == decided["blocks"]

    tops = slack_sim.state.messages(CHANNEL)[CHANNEL]
    assert len(tops) == 1 and [r["ts"] for r in tops[0]["replies"]] == [note.ts, ask.ts]


async def test_thread_follows_cursors(slack_client: SlackClient, slack_sim: SlackSim) -> None:
    ref = await slack_client.open_incident(CHANNEL, view())
    replies = [await slack_client.reply(ref, f"step {i}") for i in range(7)]
    thread = await slack_client.thread(replies[3], page_size=3)  # any message of the thread will do
    assert [m["ts"] for m in thread] == [ref.ts, *(r.ts for r in replies)]
    pages = slack_sim.state.requests("conversations.replies")
    assert len(pages) == 4  # 2 replies per page (the parent heads each page), 7 replies
    assert "cursor" not in pages[0]["args"] and all("cursor" in p["args"] for p in pages[1:])


async def test_escalation_channel_exists_by_default(slack_client: SlackClient) -> None:
    ref = await slack_client.open_incident(SlackSettings().escalation_channel, view())
    assert ref.channel == "C0ESCALATE"


# ---- errors from Slack ---------------------------------------------------------------------------------

async def test_unknown_channel(slack_client: SlackClient) -> None:
    with pytest.raises(SlackNotFound) as info:
        await slack_client.open_incident("C0NOPE", view())
    assert (info.value.method, info.value.error) == ("chat.postMessage", "channel_not_found")


async def test_update_of_unknown_message(slack_client: SlackClient) -> None:
    with pytest.raises(SlackNotFound, match="message_not_found"):
        await slack_client.update_incident(MessageRef(CHANNEL, "1700000000.000001"), view())


async def test_reply_to_unknown_thread(slack_client: SlackClient) -> None:
    with pytest.raises(SlackNotFound, match="thread_not_found"):
        await slack_client.reply(MessageRef(CHANNEL, "1700000000.000001"), "hello")
    with pytest.raises(SlackNotFound, match="thread_not_found"):
        await slack_client.thread(MessageRef(CHANNEL, "1700000000.000001"))


async def test_bad_token_is_an_auth_error_without_the_token(slack_sim: SlackSim) -> None:
    wrong = "xoxb-" + uuid.uuid4().hex
    client = SlackClient(SecretStr(wrong), api_url=slack_sim.api_url)
    with pytest.raises(SlackAuthError) as info:
        await client.auth_test()
    err = info.value
    assert err.error == "invalid_auth" and isinstance(err, SlackError)
    rendered = [str(err), repr(err), "".join(traceback.format_exception(err)), repr(client), str(vars(err))]
    for text in rendered:
        assert wrong not in text and slack_sim.token not in text
    # Not even reachable through the chain: slack_sdk's exception holds the request headers.
    assert err.__cause__ is None and err.__context__ is None
    assert slack_sim.state.requests()[-1]["auth"] == "invalid"


async def test_slack_unreachable(slack_sim: SlackSim) -> None:
    client = SlackClient(SecretStr(slack_sim.token), api_url=f"http://127.0.0.1:{free_port()}/api/")
    with pytest.raises(SlackUnavailable) as info:
        await client.auth_test()
    assert isinstance(info.value, Retryable)


def test_errors_survive_pickling() -> None:
    # Prefect pickles a failed task's exception into its state.
    err = SlackRateLimited("chat.postMessage", retry_after=7.0, retries=3)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is SlackRateLimited
    assert (back.method, back.error, back.http_status, back.retry_after, str(back)) == (
        "chat.postMessage", "ratelimited", 429, 7.0, str(err))
    back2 = pickle.loads(pickle.dumps(SlackNotFound("chat.update", "message_not_found")))
    assert (type(back2), back2.error) == (SlackNotFound, "message_not_found")


# ---- rate limits -----------------------------------------------------------------------------------------

async def test_429_is_retried_after_retry_after(slack_client: SlackClient, slack_sim: SlackSim) -> None:
    r = httpx.post(slack_sim.url + "/_sim/ratelimit",
                   json={"count": 1, "retry_after": 0, "method": "chat.postMessage"})
    assert r.json() == {"ok": True}
    ref = await slack_client.open_incident(CHANNEL, view())
    assert statuses(slack_sim, "chat.postMessage") == [429, 200]
    assert slack_sim.state.message(CHANNEL, ref.ts) is not None
    assert len(slack_sim.state.messages(CHANNEL)[CHANNEL]) == 1  # the 429 posted nothing


async def test_rate_limit_only_hits_its_method(slack_client: SlackClient, slack_sim: SlackSim) -> None:
    slack_sim.state.rate_limit(1, 0, method="chat.update")
    await slack_client.auth_test()
    ref = await slack_client.open_incident(CHANNEL, view())
    await slack_client.update_incident(ref, view("contained"))
    assert statuses(slack_sim, "auth.test") == [200]
    assert statuses(slack_sim, "chat.update") == [429, 200]


async def test_retries_exhausted(slack_sim: SlackSim) -> None:
    slack_sim.state.rate_limit(10, 0)
    client = client_for(slack_sim, max_rate_limit_retries=2)
    with pytest.raises(SlackRateLimited) as info:
        await client.open_incident(CHANNEL, view())
    assert isinstance(info.value, Retryable)
    assert info.value.retry_after == 0
    assert "gave up after 2 retries" in str(info.value)
    assert statuses(slack_sim, "chat.postMessage") == [429, 429, 429]


@pytest.mark.parametrize("retry_after", [1, 12])
async def test_retry_after_reaches_the_error(slack_sim: SlackSim, retry_after: int) -> None:
    slack_sim.state.rate_limit(1, retry_after)
    with pytest.raises(SlackRateLimited) as info:
        await client_for(slack_sim, max_rate_limit_retries=0).auth_test()
    assert info.value.retry_after == retry_after


async def test_long_retry_after_is_not_waited_out(slack_sim: SlackSim) -> None:
    slack_sim.state.rate_limit(1, 1)
    client = client_for(slack_sim, max_rate_limit_retries=3, max_retry_wait_s=0.5)
    with pytest.raises(SlackRateLimited, match="gave up after 0 retries") as info:
        await client.auth_test()
    assert info.value.retry_after == 1
    assert statuses(slack_sim, "auth.test") == [429]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "30"}, 30.0), ({"retry-after": ["2"]}, 2.0), ({"Retry-After": "0"}, 0.0),
     ({"Retry-After": "soon"}, None), ({"Retry-After": "-1"}, None), ({}, None), (None, None)],
)
def test_retry_after_seconds(headers: dict[str, object] | None, expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [(CIMultiDictProxy(CIMultiDict({"Retry-After": "12"})), 12.0, 13.2),  # aiohttp's type
     ({"Retry-After": ["3"]}, 3.0, 3.3), ({"Retry-After": "0"}, 0.0, 0.0), ({}, 1.0, 1.1)],
)
async def test_rate_limit_handler_waits_retry_after(headers: object, low: float, high: float) -> None:
    asked: list[float] = []

    async def sleep(seconds: float) -> None:
        asked.append(seconds)

    handler = RateLimitRetry(max_retry_count=2, max_wait_s=60, sleep=sleep)
    state = RetryState()
    request = HttpRequest(method="POST", url="http://127.0.0.1/api/auth.test", headers={})
    response = HttpResponse(status_code=429, headers=headers)  # type: ignore[arg-type]
    assert await handler.can_retry_async(state=state, request=request, response=response)
    await handler.prepare_for_next_attempt_async(state=state, request=request, response=response)
    assert len(asked) == 1 and low <= asked[0] <= high
    assert state.next_attempt_requested and state.current_attempt == 1


# ---- secrets never leak ------------------------------------------------------------------------------------

async def test_token_is_in_no_log_and_no_record(slack_client: SlackClient, slack_sim: SlackSim,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    slack_sim.state.rate_limit(1, 0)
    marker = f"marker-{uuid.uuid4().hex}"
    await slack_client.auth_test()
    ref = await slack_client.open_incident(CHANNEL, view())
    await slack_client.reply(ref, marker)
    await slack_client.thread(ref)
    with pytest.raises(SlackAuthError):
        await SlackClient(SecretStr("xoxb-bad-" + marker), api_url=slack_sim.api_url).auth_test()

    assert caplog.records, "expected some log records at DEBUG"
    assert slack_sim.token not in caplog.text
    assert marker not in caplog.text  # slack_sdk's DEBUG request/response bodies stay unbuilt
    record = (httpx.get(slack_sim.url + "/_sim/requests").text
              + httpx.get(slack_sim.url + "/_sim/messages").text)
    assert slack_sim.token not in record and "xoxb-bad-" not in record
    assert slack_sim.token not in repr(slack_sim.state) and slack_sim.token not in repr(slack_client)
    assert all(r["auth"] in ("valid", "invalid") for r in slack_sim.state.requests())


# ---- the simulator on its own (raw HTTP, the way other Slack clients send) -----------------------------

def test_form_body_and_token_argument(slack_sim: SlackSim) -> None:
    blocks = bk.approval_blocks(approval())
    r = httpx.post(slack_sim.api_url + "chat.postMessage",
                   data={"token": slack_sim.token, "channel": CHANNEL, "text": "hi",
                         "blocks": json.dumps(blocks)})
    body = r.json()
    assert body["ok"] is True and body["message"]["blocks"] == blocks
    recorded = slack_sim.state.requests("chat.postMessage")[-1]
    assert "token" not in recorded["args"] and recorded["auth"] == "valid"
    assert recorded["content_type"].startswith("application/x-www-form-urlencoded")


@pytest.mark.parametrize(
    ("headers", "error"),
    [({}, "not_authed"), ({"Authorization": "Bearer xoxb-nope"}, "invalid_auth"),
     ({"Authorization": "Basic abc"}, "not_authed")],
)
def test_token_is_checked(slack_sim: SlackSim, headers: dict[str, str], error: str) -> None:
    r = httpx.post(slack_sim.api_url + "auth.test", headers=headers)
    assert (r.status_code, r.json()) == (200, {"ok": False, "error": error})


def test_bad_requests(slack_sim: SlackSim) -> None:
    auth = {"Authorization": f"Bearer {slack_sim.token}"}
    unknown = httpx.post(slack_sim.api_url + "chat.delete", headers=auth)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_method")
    bad_json = httpx.post(slack_sim.api_url + "chat.postMessage",
                          headers={**auth, "Content-Type": "application/json"}, content=b"{nope")
    assert bad_json.json()["error"] == "invalid_json"
    no_text = httpx.post(slack_sim.api_url + "chat.postMessage", headers=auth, json={"channel": CHANNEL})
    assert no_text.json()["error"] == "no_text"
    button = {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "x" * 76}}
    too_long = httpx.post(slack_sim.api_url + "chat.postMessage", headers=auth, json={
        "channel": CHANNEL, "text": "t", "blocks": [{"type": "actions", "elements": [button]}]})
    assert too_long.json()["error"] == "invalid_blocks"
    assert "[json-pointer:/blocks/0/elements/0/text/text]" in too_long.json()["errors"][0]
    assert slack_sim.state.messages(CHANNEL)[CHANNEL] == []


def test_update_keeps_fields_it_is_not_given(slack_sim: SlackSim) -> None:
    auth = {"Authorization": f"Bearer {slack_sim.token}"}
    blocks = bk.incident_blocks(view())
    posted = httpx.post(slack_sim.api_url + "chat.postMessage", headers=auth,
                        json={"channel": CHANNEL, "text": "one", "blocks": blocks}).json()
    updated = httpx.post(slack_sim.api_url + "chat.update", headers=auth,
                         json={"channel": CHANNEL, "ts": posted["ts"], "text": "two"}).json()
    assert updated["ok"] and updated["message"]["text"] == "two" and updated["message"]["blocks"] == blocks


def test_admin_routes(slack_sim: SlackSim) -> None:
    auth = {"Authorization": f"Bearer {slack_sim.token}"}
    httpx.post(slack_sim.api_url + "chat.postMessage", headers=auth, json={"channel": CHANNEL, "text": "x"})
    assert httpx.get(slack_sim.url + "/_sim/health").json() == {"ok": True}
    everything = httpx.get(slack_sim.url + "/_sim/messages").json()["channels"]
    assert set(everything) >= {"C0INCIDENT", "C0ESCALATE"} and len(everything[CHANNEL]) == 1
    assert everything[CHANNEL][0]["replies"] == []
    assert httpx.get(slack_sim.url + "/_sim/messages", params={"channel": "C0NOPE"}).status_code == 404
    assert httpx.post(slack_sim.url + "/_sim/channels", json={"id": "C0EXTRA"}).json() == {"ok": True}
    assert httpx.post(slack_sim.api_url + "chat.postMessage", headers=auth,
                      json={"channel": "C0EXTRA", "text": "x"}).json()["ok"] is True
    assert httpx.delete(slack_sim.url + "/_sim/messages").json() == {"ok": True}
    assert all(v == [] for v in httpx.get(slack_sim.url + "/_sim/messages").json()["channels"].values())
    posts = httpx.get(slack_sim.url + "/_sim/requests", params={"method": "chat.postMessage"}).json()
    assert len(posts["requests"]) == 2
    assert httpx.delete(slack_sim.url + "/_sim/requests").json() == {"ok": True}
    assert httpx.get(slack_sim.url + "/_sim/requests").json()["requests"] == []
    for bad in ({"count": "1"}, {"count": 1, "retry_after": -1}, {"count": True}, {"count": 1, "method": 5}):
        assert httpx.post(slack_sim.url + "/_sim/ratelimit", json=bad).status_code == 400


def test_ts_strictly_increase_with_a_stopped_clock() -> None:
    state = SimState(bot_tokens={"t"}, clock=lambda: 1732460000.0001)
    first = state.post(CHANNEL, {"text": "a"})["ts"]
    more = [state.post(CHANNEL, {"text": "b"}, thread_ts=first)["ts"] for _ in range(3)]
    assert [first, *more] == [
        "1732460000.000100", "1732460000.000101", "1732460000.000102", "1732460000.000103"]
    with pytest.raises(KeyError, match="thread_not_found"):
        state.post(CHANNEL, {"text": "c"}, thread_ts=more[0])  # a reply to a reply


async def test_configured_channels_and_clock() -> None:
    app = create_app(bot_tokens={"xoxb-local"}, team_id="T0OTHER", channels=["C0EXTRA"],
                     clock=lambda: 1732460000.0)
    with ServedApp(app, name="second Slack simulator") as served:
        client = SlackClient(SecretStr("xoxb-local"), api_url=served.url + "/api")
        assert (await client.auth_test()).team_id == "T0OTHER"
        ref = await client.open_incident("C0EXTRA", view())
        assert ref.ts == "1732460000.000000"
        assert (await client.reply(ref, "x")).ts == "1732460000.000001"
