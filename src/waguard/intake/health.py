"""Readiness: could the intake take a delivery right now? Each dependency a delivery needs, checked.

Liveness (`/healthz`) only says the process answers. Readiness (`/readyz`) reads what a delivery
reads: a secret from Vault (a sealed or unreachable Vault, or a revoked token, is "down": every
delivery would get 503) and the intake's SQLite store (replay cache and incident claims). Prefect is
not a dependency of an answer: a run whose start fails stays pending and is retried.

Results are kept for `ttl_s`, so a flood of probes is not a flood of Vault reads.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from waguard.intake.keys import SecretReader
from waguard.intake.metrics import CONTENT_TYPE
from waguard.vault.errors import VaultSecretNotFound

CHECK_TIMEOUT_S = 2.0


class Readiness:
    def __init__(self, vault: SecretReader, store: Any, probe_path: str, *, ttl_s: float = 1.0) -> None:
        self._vault, self._store, self._path, self._ttl = vault, store, probe_path, ttl_s
        self._last: tuple[float, dict[str, str]] | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> dict[str, str]:
        """{"vault": "ok" | why not, "store": "ok" | why not}; never a secret or its path."""
        async with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self._ttl:
                return self._last[1]
            result = {"vault": await self._vault_state(), "store": self._store_state()}
            self._last = (time.monotonic(), result)
            return result

    async def _vault_state(self) -> str:
        try:
            await asyncio.wait_for(self._vault.read_secret(self._path), CHECK_TIMEOUT_S)
        except VaultSecretNotFound:
            return "ok"  # Vault answers; a missing secret is a configuration finding, refused per delivery
        except TimeoutError:
            return f"down: no answer within {CHECK_TIMEOUT_S:g} s"
        except Exception as err:  # noqa: BLE001 - any failure means deliveries get 503
            return f"down: {type(err).__name__} (sealed, unreachable or refusing the intake's token)"
        return "ok"

    def _store_state(self) -> str:
        try:
            with self._store.transaction():  # BEGIN IMMEDIATE: the write lock a delivery needs
                pass
        except Exception as err:  # noqa: BLE001
            return f"down: {type(err).__name__}"
        return "ok"


# --- the routes (`service` is the app's IntakeService) ---------------------------------------------


def ops_routes(service: Any, *, metrics: bool = True) -> list[Route]:
    """/healthz (liveness: the process answers), /readyz (a delivery could be taken now; 503 naming
    what is down otherwise) and, unless it is served apart, /metrics."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = await service.readiness.check()
        failing = sorted(name for name, state in checks.items() if state != "ok")
        body = {"status": "not-ready" if failing else "ready", "failing": failing, "checks": checks}
        return JSONResponse(body, status_code=503 if failing else 200)

    async def render(request: Request) -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
    return routes + ([Route("/metrics", render, methods=["GET"])] if metrics else [])


def create_ops_app(public: Starlette) -> Starlette:
    """The app for `intake.metrics_listen`: health and metrics of `public`'s service, no webhooks."""
    return Starlette(routes=ops_routes(public.state.intake))
