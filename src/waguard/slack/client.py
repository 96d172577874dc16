"""The Slack Web API client waguard's flows use: incident threads, updates and approval buttons.

A thin layer over slack_sdk's `AsyncWebClient`; the same class talks to Slack in production and to
the Slack simulator in drills and tests (only `api_url` differs).

Rate limits: slack_sdk does not retry an HTTP 429 by default. This client installs a rate-limit retry
handler (slack_sdk's, adapted) that waits Slack's `Retry-After` and, when its retries are spent or
Slack asks for more than `max_retry_wait_s`, raises `SlackRateLimited` (Retryable) carrying
`retry_after`, so a long wait becomes the Prefect task's retry instead of a step sleeping for minutes.

Secrets: the bot token goes into slack_sdk and nowhere else. It is not in `repr(client)`, not in
any error (errors carry the method and Slack's error code, and are raised with neither __cause__
nor __context__ reaching slack_sdk's exception, which holds the request headers). slack_sdk logs full request
and response bodies at DEBUG, so its client logs through a logger of ours pinned at INFO.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from waguard.errors import ConfigError
from waguard.settings import SlackSettings
from waguard.slack import blocks as bk
from waguard.slack.errors import SlackError, SlackRateLimited, SlackUnavailable, error_for

log = logging.getLogger(__name__)

# slack_sdk logs every request's and response's json body at DEBUG (message text, user ids): the
# client gets this logger, whose own level keeps those records from being built at all, even when
# the root logger is at DEBUG.
SDK_LOGGER = logging.getLogger("waguard.slack.sdk")
SDK_LOGGER.setLevel(logging.INFO)

MAX_THREAD_PAGES = 1000  # a cursor loop guard: 1000 pages of 200 is far beyond any incident thread


@dataclass(frozen=True)
class MessageRef:
    """Where a message is: its channel and ts, and the ts of the thread it is in, if any."""

    channel: str
    ts: str
    thread_ts: str | None = None

    @property
    def root(self) -> str:
        """The ts of the thread's parent message (this message's own ts if it starts the thread)."""
        return self.thread_ts or self.ts


@dataclass(frozen=True)
class BotIdentity:
    """Who the token belongs to, from auth.test."""

    team_id: str
    user_id: str
    bot_id: str | None
    team: str | None
    url: str | None


def retry_after_seconds(headers: Mapping[str, Any] | None) -> float | None:
    """Slack's Retry-After in seconds, or None when absent or unreadable (pure).

    Accepts aiohttp's headers (str values) and slack_sdk's urllib ones (list values).
    """
    if not headers:
        return None
    for name, value in headers.items():
        if name.lower() == "retry-after":
            if isinstance(value, list | tuple):
                value = value[0] if value else None
            try:
                seconds = float(str(value).strip())
            except ValueError:
                return None
            return seconds if 0 <= seconds < float("inf") else None
    return None


class RateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """Retries an HTTP 429 after Retry-After, unless Slack asks for more than `max_wait_s`.

    Differs from slack_sdk's handler in three ways: a Retry-After over `max_wait_s` is not waited
    out, the jitter is proportional (none for Retry-After 0, where slack_sdk adds up to 1 s), and
    the sleep is injectable.
    """

    def __init__(self, max_retry_count: int, max_wait_s: float,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_s = max_wait_s
        self._sleep = sleep  # passed in so a test can see the wait asked for without waiting

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = retry_after_seconds(response.headers)
        return wait is None or wait <= self.max_wait_s

    async def prepare_for_next_attempt_async(self, *, state: RetryState, request: HttpRequest,
                                             response: HttpResponse | None = None,
                                             error: Exception | None = None) -> None:
        wait = retry_after_seconds(response.headers if response is not None else None)
        wait = 1.0 if wait is None else wait
        state.next_attempt_requested = True
        # A little jitter so parallel runs do not come back in lock-step; none for Retry-After 0.
        await self._sleep(wait + random.uniform(0, min(1.0, wait * 0.1)))
        state.increment_current_attempt()


class SlackClient:
    """Posts and updates waguard's incident threads and approval requests.

    Build one per flow run (`from_settings`); it holds no connection between calls.
    """

    def __init__(self, token: SecretStr, *, api_url: str, max_rate_limit_retries: int = 3,
                 max_retry_wait_s: float = 60.0, timeout_s: int = 30) -> None:
        """
        Args:
            token: the bot token (xoxb-...), read from Vault by the caller.
            api_url: Web API base URL: https://slack.com/api/ or the simulator's /api/.
            max_rate_limit_retries: retries after an HTTP 429 before raising SlackRateLimited.
            max_retry_wait_s: a longer Retry-After is not waited out here but raised at once.
            timeout_s: timeout of one HTTP request.

        Raises:
            ConfigError: the token is empty or not a SecretStr.
        """
        if not isinstance(token, SecretStr) or not token.get_secret_value().strip():
            raise ConfigError("the Slack bot token must be a non-empty SecretStr")
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.max_rate_limit_retries = max_rate_limit_retries
        self.max_retry_wait_s = max_retry_wait_s
        self._web = AsyncWebClient(
            token=token.get_secret_value(),
            base_url=self.api_url,
            timeout=timeout_s,
            logger=SDK_LOGGER,
            retry_handlers=[
                RateLimitRetry(max_rate_limit_retries, max_retry_wait_s),
                AsyncConnectionErrorRetryHandler(max_retry_count=1),
            ],
        )

    @classmethod
    def from_settings(cls, slack: SlackSettings, token: SecretStr) -> SlackClient:
        """A client for `slack.api_url` with the configured rate-limit retries."""
        return cls(token, api_url=slack.api_url, max_rate_limit_retries=slack.max_rate_limit_retries)

    def __repr__(self) -> str:
        return f"SlackClient(api_url={self.api_url!r})"

    async def _call(self, method: str, call: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
        """Await one Web API call and translate slack_sdk's and aiohttp's failures into SlackError."""
        try:
            response = await call
        except SlackApiError as e:
            error = self._api_error(method, e)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            error = SlackUnavailable(method, "unreachable", detail=type(e).__name__)
        except SlackClientError as e:
            error = SlackError(method, "client_error", detail=type(e).__name__)
        else:
            log.debug("slack %s ok", method)
            return response
        # Raised outside the except blocks so neither __cause__ nor __context__ links to slack_sdk's
        # exception: its response object holds the request headers, Authorization included.
        raise error

    def _api_error(self, method: str, e: SlackApiError) -> SlackError:
        status = e.response.status_code
        if status == 429:
            wait = retry_after_seconds(e.response.headers)
            retries = self.max_rate_limit_retries if (wait is None or wait <= self.max_retry_wait_s) else 0
            return SlackRateLimited(method, retry_after=wait, retries=retries)
        data = e.response.data if isinstance(e.response.data, dict) else {}
        return error_for(method, str(data.get("error") or "unexpected_response"), http_status=status)

    async def auth_test(self) -> BotIdentity:
        """Check the token and say whose it is.

        Raises:
            SlackAuthError: the token was refused.
            SlackError: any other failure.
        """
        r = await self._call("auth.test", self._web.auth_test())
        return BotIdentity(team_id=r["team_id"], user_id=r["user_id"], bot_id=r.get("bot_id"),
                           team=r.get("team"), url=r.get("url"))

    async def is_member(self, channel: str) -> bool:
        """Whether the bot is in `channel` (so it can post there), without posting (conversations.info).

        Raises:
            SlackNotFound: no such channel, or the bot cannot see it (a private channel it is not in).
            SlackError: any other failure.
        """
        r = await self._call("conversations.info", self._web.conversations_info(channel=channel))
        return bool((r.get("channel") or {}).get("is_member"))

    async def _post(self, channel: str, text: str, blocks: list[bk.Block] | None,
                    thread_ts: str | None = None) -> MessageRef:
        args: dict[str, Any] = {"channel": channel, "text": text}
        if blocks is not None:
            args["blocks"] = blocks
        if thread_ts is not None:
            args["thread_ts"] = thread_ts
        r = await self._call("chat.postMessage", self._web.chat_postMessage(**args))
        ref = MessageRef(channel=r["channel"], ts=r["ts"], thread_ts=thread_ts)
        log.info("posted Slack message channel=%s ts=%s thread_ts=%s", ref.channel, ref.ts, thread_ts)
        return ref

    async def _update(self, ref: MessageRef, text: str, blocks: list[bk.Block]) -> None:
        await self._call("chat.update", self._web.chat_update(channel=ref.channel, ts=ref.ts, text=text,
                                                              blocks=blocks))
        log.info("updated Slack message channel=%s ts=%s", ref.channel, ref.ts)

    async def open_incident(self, channel: str, view: bk.IncidentView) -> MessageRef:
        """Post the incident status message that starts the incident's thread.

        Raises:
            SlackNotFound: the channel does not exist or the bot is not in it.
            SlackRateLimited: Slack kept answering 429.
            SlackError: any other failure.
        """
        return await self._post(channel, bk.incident_text(view), bk.incident_blocks(view))

    async def update_incident(self, ref: MessageRef, view: bk.IncidentView) -> None:
        """Replace the incident status message with the current view.

        Raises:
            SlackNotFound: the message or channel is gone.
            SlackError: any other failure.
        """
        await self._update(ref, bk.incident_text(view), bk.incident_blocks(view))

    async def reply(self, ref: MessageRef, text: str, blocks: list[bk.Block] | None = None) -> MessageRef:
        """Post `text` (mrkdwn) and optional blocks in the thread of `ref` (or of its parent).

        Raises:
            SlackNotFound: the channel or thread does not exist.
            SlackError: any other failure.
        """
        return await self._post(ref.channel, text, blocks, thread_ts=ref.root)

    async def post_approval(self, ref: MessageRef, request: bk.ApprovalRequest) -> MessageRef:
        """Post an approval request with Approve / Deny buttons in the incident thread of `ref`.

        Raises:
            SlackError: the post failed (see `reply`).
        """
        return await self.reply(ref, bk.approval_text(request), bk.approval_blocks(request))

    async def mark_decided(self, approval_ref: MessageRef, request: bk.ApprovalRequest,
                           decision: bk.Decided, by_user: str) -> None:
        """Replace an approval request's buttons with the decision and who made it.

        Raises:
            ValueError: `decision` is not one of approved, denied, held, proceeded.
            SlackError: the update failed.
        """
        blocks = bk.decided_blocks(request, decision, by_user)
        await self._update(approval_ref, bk.decided_text(request, decision, by_user), blocks)

    async def thread(self, ref: MessageRef, *, page_size: int = 200) -> list[dict[str, Any]]:
        """Every message of the thread `ref` is in: the parent first, then the replies in order.

        Follows `response_metadata.next_cursor` until the last page; a message that appears on two
        pages (Slack may repeat the parent) is returned once.

        Raises:
            SlackNotFound: the channel or thread does not exist.
            SlackError: any other failure, or a cursor that never ends.
        """
        messages: list[dict[str, Any]] = []
        seen: set[str] = set()
        cursor: str | None = None
        for _ in range(MAX_THREAD_PAGES):
            args: dict[str, Any] = {"channel": ref.channel, "ts": ref.root, "limit": page_size}
            if cursor:
                args["cursor"] = cursor
            r = await self._call("conversations.replies", self._web.conversations_replies(**args))
            for message in r.get("messages") or []:
                if message.get("ts") not in seen:
                    seen.add(message.get("ts"))
                    messages.append(message)
            cursor = (r.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return messages
        raise SlackError("conversations.replies", "cursor_loop",
                         detail=f"more than {MAX_THREAD_PAGES} pages; stopped")
