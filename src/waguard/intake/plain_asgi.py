"""The alert webhooks' POSTs served as plain ASGI, in front of the Starlette app.

A delivery costs the intake about a hundred microseconds of its own work; Starlette's middleware
stack, router, Request and Response added a fifth to that on every one. The webhook paths are fixed,
so their POSTs are looked up in a dict and handed straight to the pipeline (`IntakeService.take`),
which keeps every guarantee: size and content-type checks, verification of the raw bytes before
parsing, the depth and duplicate-key checks, the durable claim before the answer, audit and metrics.
Everything else (other methods and paths, a `root_path`, lifespan) goes to the Starlette app as
before, and an unexpected error still gets a one-line log and a 500 before it reaches the server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

log = logging.getLogger("waguard.intake.app")
Take = Callable[[Scope, Receive], Awaitable[tuple[int, dict[str, Any]]]]
_JSON = (b"content-type", b"application/json")
_ERROR = b'{"error":"error"}'


class IntakeApp(Starlette):
    """A Starlette app whose webhook POSTs (`webhooks`: path -> pipeline) skip the framework."""

    def __init__(self, *, webhooks: dict[str, Take], encode: Callable[[Any], str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.webhooks, self._encode = webhooks, encode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            take = self.webhooks.get(scope["path"])
            if take is not None:
                await self._serve(take, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _serve(self, take: Take, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, body = await take(scope, receive)
            payload = self._encode(body).encode()
        except Exception as exc:
            # As Starlette's error middleware does with the app's handler: answer 500, log, re-raise.
            log.error("intake: unexpected error on POST %s: %s", scope["path"], type(exc).__name__)
            await _respond(send, 500, _ERROR)
            raise
        await _respond(send, status, payload)


async def _respond(send: Send, status: int, payload: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(payload)).encode()), _JSON]})
    await send({"type": "http.response.body", "body": payload})
