"""The webhook POSTs are served as plain ASGI in front of Starlette: same answers, same guarantees.

The same pipeline serves a Starlette route built around the same service (the twin): refusals get the
same status, type and JSON; an accepted delivery through one is a duplicate through the other. The
webhooks never pass through Starlette's middleware (the point: its cost per delivery); anything else
still does. An unexpected error inside the pipeline is a 500 JSON answer and one log line.
"""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import tests.fixtures.intake as fx
from tests.fixtures.intake import Harness, am_headers, am_notification, dumps, github_alert, github_headers

intake = fx.intake
intake_env = fx.intake_env

pytestmark = pytest.mark.slow


def twin(h: Harness) -> httpx.AsyncClient:
    """The same service's pipeline behind an ordinary Starlette route."""

    async def endpoint(request: Request) -> Response:
        return await h.service.deliver(request, request.path_params["source"])

    app = Starlette(routes=[Route("/alerts/{source}", endpoint, methods=["POST"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://twin.test")


async def test_answers_match_the_starlette_route(intake: Harness) -> None:
    token = intake.env.secrets.alertmanager_token
    body = dumps(am_notification())
    gh = dumps(github_alert())
    cases = [
        ("/alerts/alertmanager", body, am_headers("wrong-token")),  # 401
        ("/alerts/alertmanager", body, {**am_headers(token), "Content-Type": "text/plain"}),  # 415
        ("/alerts/alertmanager", b"[" * 100 + b"]" * 100, am_headers(token)),  # 400 too deep
        ("/alerts/github", gh, github_headers(intake.env.secrets.github_secret, gh, "d-1", "push")),  # 400
    ]
    async with twin(intake) as other:
        for path, content, headers in cases:
            mine = await intake.client.post(path, content=content, headers=headers)
            theirs = await other.post(path, content=content, headers=headers)
            assert mine.status_code == theirs.status_code >= 400
            assert mine.json() == theirs.json()
            for name in ("content-type", "content-length"):
                assert mine.headers[name] == theirs.headers[name]
        first = await intake.client.post("/alerts/alertmanager", content=body, headers=am_headers(token))
        again = await other.post("/alerts/alertmanager", content=body, headers=am_headers(token))
    assert first.status_code == 200 and first.json()["outcome"] == "started"
    assert first.headers["content-type"] == "application/json"
    assert again.status_code == 200 and again.json() == {"outcome": "duplicate"}


async def test_webhooks_skip_the_middleware_and_the_rest_does_not(intake: Harness) -> None:
    seen: list[str] = []

    def counting(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                seen.append(f"{scope['method']} {scope['path']}")
            await app(scope, receive, send)

        return middleware

    intake.app.add_middleware(counting)  # type: ignore[arg-type]
    token = intake.env.secrets.alertmanager_token
    r = await intake.client.post("/alerts/alertmanager", content=dumps(am_notification()),
                                 headers=am_headers(token))
    assert r.status_code == 200
    assert (await intake.client.get("/healthz")).status_code == 200
    assert (await intake.client.get("/alerts/alertmanager")).status_code == 405
    assert seen == ["GET /healthz", "GET /alerts/alertmanager"]


async def test_an_unexpected_error_is_a_500_json_answer_and_one_log_line(
    intake: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    intake.service.store.close()  # the pipeline's next store call raises sqlite3.ProgrammingError
    transport = httpx.ASGITransport(app=intake.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as client:
        with caplog.at_level(logging.ERROR, logger="waguard.intake.app"):
            r = await client.post("/alerts/alertmanager", content=dumps(am_notification()),
                                  headers=am_headers(intake.env.secrets.alertmanager_token))
    assert r.status_code == 500 and r.json() == {"error": "error"}
    assert r.headers["content-type"] == "application/json"
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "waguard.intake.app"]
    assert lines == ["intake: unexpected error on POST /alerts/alertmanager: ProgrammingError"]
