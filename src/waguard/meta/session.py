"""`GraphSession`: the one path every Graph call takes, over httpx (the calls are `GraphClient`'s).

Policy lives here (auth, appsecret_proof, retries, paging, the registration budget); the protocol
lives in `wire.py`; bytes move through an `httpx.AsyncBaseTransport` the caller may pass in (tests
pass `httpx.MockTransport`, drills talk to the Meta simulator over real HTTP).

Logging: this module logs methods and paths only (ids, never query strings or bodies) and adds no
handlers. httpx itself logs every URL at INFO, query included, which would carry `appsecret_proof`
and the `input_token` of debug_token: entry points call `quiet_http_loggers()` once at start-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, SecretStr

from waguard.errors import ConfigError, Retryable
from waguard.meta import answers, wire
from waguard.meta.errors import MetaUnavailable, MetaUnexpectedResponse
from waguard.meta.ledger import Action, BudgetLedger, RegistrationLedger
from waguard.meta.usage import SLOW_DOWN_PERCENT
from waguard.settings import GRAPH_VERSION_PATTERN, MetaSettings

log = logging.getLogger(__name__)

MAX_PAGES = 1000  # a guard against a server that never ends a list, not a real limit
M = TypeVar("M", bound=BaseModel)
Sleep = Callable[[float], Awaitable[None]]

# Failures where Graph never answered: worth another try. Other httpx errors (bad URL, unsupported
# scheme) are configuration mistakes and surface as they are.
_NO_ANSWER = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)


def quiet_http_loggers() -> None:
    """Raise the `httpx` and `httpcore` loggers to WARNING so request URLs are never logged.

    Call once from every entry point (CLI, flow module, intake service). Graph URLs carry
    `appsecret_proof` and, for debug_token, the token under inspection.
    """
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


class GraphSession:
    """How every Graph call is made; `GraphClient` (client.py) is this plus the calls. Use it as
    `async with`, or `aclose()`.

    Retries only `Retryable` failures (throttling, transient errors, no answer), for as long as
    `retry_budget_s` allows: a burst of throttling or 5xx answers is waited out, not counted. Each
    wait is Meta's hint (Retry-After, the BUC `estimated_time_to_regain_access`) or exponential
    back-off, never longer than `backoff_cap_s`. When Meta's hint is longer than the whole budget the
    error is raised at once with its `retry_after`: Meta has said it will not be back in time.
    Register/deregister spend one unit of the number's 72 h budget per attempt, so they are retried
    at most `registration_retries` times whatever the time budget. `max_retries`, when given, caps
    every call's retries too (0: no retries, as verification wants).
    Time spent is the larger of the injected `monotonic` clock's elapsed time and the sum of sleeps,
    so an injected `sleep` that does not move the clock still ends the loop.
    """

    def __init__(
        self,
        *,
        base_url: str,
        version: str,
        token: SecretStr,
        app_secret: SecretStr | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 10,
        retry_budget_s: float = 120,
        backoff_cap_s: float = 10,
        registration_retries: int = 2,
        max_retries: int | None = None,
        sleep: Sleep = asyncio.sleep,
        ledger: BudgetLedger | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not re.fullmatch(GRAPH_VERSION_PATTERN, version):
            raise ValueError("version must look like v23.0")
        if not isinstance(token, SecretStr) or not token.get_secret_value():
            raise ValueError("token must be a non-empty SecretStr")
        bad_secret = not (isinstance(app_secret, SecretStr) and app_secret.get_secret_value())
        if app_secret is not None and bad_secret:
            raise ValueError("app_secret must be a non-empty SecretStr or None")
        if retry_budget_s < 0 or backoff_cap_s <= 0 or registration_retries < 0 or (max_retries or 0) < 0:
            raise ValueError(
                "retry_budget_s, registration_retries, max_retries must be >= 0; backoff_cap_s > 0"
            )
        self._root = f"{base_url.rstrip('/')}/{version}"
        self._token = token
        self._proof = SecretStr(wire.appsecret_proof(token, app_secret)) if app_secret is not None else None
        self._secrets = tuple(s.get_secret_value() for s in (token, app_secret, self._proof) if s is not None)
        self._retry_budget_s = retry_budget_s
        self._backoff_cap_s = backoff_cap_s
        self._registration_retries = registration_retries
        self._max_retries = max_retries
        self._sleep = sleep
        self._ledger = ledger
        self._clock = clock
        self._monotonic = monotonic
        self._jitter = jitter
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout_s, follow_redirects=False)

    @classmethod
    def from_settings(
        cls,
        meta: MetaSettings,
        *,
        token: SecretStr,
        app_secret: SecretStr | None,
        transport: httpx.AsyncBaseTransport | None = None,
        ledger: BudgetLedger | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> Self:
        """A client for `meta`; the ledger defaults to the SQLite one at `meta.ledger_path` (callers that
        hold the whole settings pass `waguard.state.backends.open_ledger(settings)`).

        `app_secret` is ignored when `meta.appsecret_proof` is off.

        Raises:
            ConfigError: `meta.appsecret_proof` is on but no app secret was given.
        """
        if meta.appsecret_proof and app_secret is None:
            raise ConfigError("meta.appsecret_proof is on, so the Graph client needs the app secret")
        return cls(
            base_url=meta.graph_url,
            version=meta.graph_version,
            token=token,
            app_secret=app_secret if meta.appsecret_proof else None,
            transport=transport,
            timeout_s=meta.timeout_s,
            retry_budget_s=meta.retry_budget_s,
            backoff_cap_s=meta.backoff_cap_s,
            registration_retries=meta.registration_retries,
            sleep=sleep,
            ledger=ledger if ledger is not None else RegistrationLedger.from_settings(meta),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._root!r}, appsecret_proof={self._proof is not None})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # ---- the one path every call takes -------------------------------------------------------------

    async def _call(self, req: wire.GraphRequest, budget: Action | None = None, number: str = "") -> Any:
        """Send `req`, retrying within the time budget; return the decoded JSON of a 2xx answer."""
        limit = self._max_retries
        if budget is not None:  # each attempt spends a unit Meta allows 10 of per 72 h: a count, not time
            limit = self._registration_retries if limit is None else min(limit, self._registration_retries)
        started, slept, attempt = self._monotonic(), 0.0, 0
        while True:
            if budget is not None:
                await self._reserve(number, budget)
            try:
                return await self._send(req)
            except Retryable as err:
                if err.retry_after is not None and err.retry_after > self._retry_budget_s:
                    raise  # Meta said it will not be back within our budget: waiting cannot help
                delay = wire.backoff_seconds(err, attempt, self._backoff_cap_s, jitter=self._jitter())
                spent = max(self._monotonic() - started, slept)
                if (limit is not None and attempt >= limit) or spent + delay > self._retry_budget_s:
                    raise
                attempt += 1
                log.info(
                    "Graph %s %s: %s; retry %d in %.1f s (%.0f of %.0f s budget spent)",
                    req.method, req.path, type(err).__name__, attempt, delay, spent, self._retry_budget_s,
                )  # fmt: skip
                await self._sleep(delay)
                slept += delay

    async def _reserve(self, number: str, action: Action) -> None:
        if self._ledger is None:
            raise ConfigError(f"{action} needs a RegistrationLedger: Meta locks a number after 10 in 72 h")
        ledger = self._ledger
        # SQLite may wait on another process's lock: keep that off the event loop.
        left = await asyncio.to_thread(ledger.reserve, number, action, self._clock())
        log.info("registration budget of %s: %s recorded, %d left in 72 h", number, action, left)

    async def _send(self, req: wire.GraphRequest) -> Any:
        params = dict(wire.unwrap_secrets(req.params))
        if self._proof is not None:
            params["appsecret_proof"] = self._proof.get_secret_value()
        bearer = f"Bearer {self._token.get_secret_value()}"
        headers = {"Authorization": bearer, "User-Agent": wire.user_agent()}
        secrets = self._secrets + wire.secret_values(req)
        # Errors are raised outside the `except` blocks below, so they carry no __context__: the
        # httpx exception holds the request (its URL has the proof) and a JSONDecodeError the body.
        failure: str | None = None
        try:
            response = await self._http.request(
                req.method,
                self._root + req.path,
                params=params,
                json=wire.unwrap_secrets(req.json) if req.json is not None else None,
                data=wire.unwrap_secrets(req.form) if req.form is not None else None,
                headers=headers,
            )
        except _NO_ANSWER as exc:
            failure = type(exc).__name__
        if failure is not None:
            raise MetaUnavailable(f"no answer from Graph ({failure})", path=req.path)
        peak = wire.usage_peak(response.headers)
        if peak >= SLOW_DOWN_PERCENT:
            log.warning("Graph usage at %d%% of the hourly budget after %s %s", peak, req.method, req.path)
        if not response.is_success:
            raise answers.decode_error(
                response.status_code, response.headers, response.content, path=req.path, secrets=secrets
            )
        try:
            return json.loads(response.content)
        except ValueError:
            pass
        raise MetaUnexpectedResponse("answer is not JSON", http_status=response.status_code, path=req.path)

    async def _mutate(self, req: wire.GraphRequest, budget: Action | None = None, number: str = "") -> None:
        answers.expect_success(await self._call(req, budget, number), req.path)

    async def _node(self, req: wire.GraphRequest, model: type[M]) -> M:
        return answers.parse(model, answers.expect_object(await self._call(req), req.path), req.path)

    async def _collect(self, build: Callable[[str | None], wire.GraphRequest], model: type[M]) -> list[M]:
        """Every item of a list edge, following `paging.cursors.after` page by page."""
        items: list[M] = []
        after: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            req = build(after)
            rows, after = answers.page(await self._call(req), req.path)
            items.extend(answers.parse(model, row, req.path) for row in rows)
            if after is None:
                return items
            if after in seen:
                raise MetaUnexpectedResponse("paging cursor repeated", path=req.path)
            seen.add(after)
        raise MetaUnexpectedResponse(f"list did not end within {MAX_PAGES} pages", path=req.path)
