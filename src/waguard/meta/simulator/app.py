"""`create_app`: the Meta Graph simulator as a Starlette ASGI app."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from waguard.meta.simulator.admin import ROUTES as ADMIN_ROUTES
from waguard.meta.simulator.graph import graph_endpoint
from waguard.meta.simulator.seed import Seed
from waguard.meta.simulator.state import SimState

GRAPH_METHODS = ["GET", "POST", "DELETE"]


async def _bad_json(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "body is not JSON"}, status_code=400)


def create_app(seed: Seed, *, clock: Callable[[], float] | None = None) -> Starlette:
    """The simulator, serving Graph paths under `/{version}/` and its admin API under `/_sim/`.

    `clock` (unix seconds) drives every window: the 72 h registration budget, the hourly call
    budgets, token expiry and timed faults. Without one the simulator uses its built-in clock, wall
    time plus an offset that POST /_sim/clock advances; with an injected clock, POST /_sim/clock
    answers 409 and the caller moves its own clock. `app.state.sim` is the live `SimState`.
    """
    routes = [
        *ADMIN_ROUTES,
        Route("/{path:path}", graph_endpoint, methods=GRAPH_METHODS),
    ]
    app = Starlette(routes=routes, exception_handlers={json.JSONDecodeError: _bad_json})
    app.state.sim = SimState(seed, clock)
    return app
