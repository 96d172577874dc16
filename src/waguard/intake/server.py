"""Running the intake for real: `waguard intake` (also what `waguard up` starts, as a child process).

Both build the app from settings with a VaultClient and the Prefect starter, and point Prefect's
client at `settings.prefect.api_url` (Slack votes go through `waguard.playbook.approval.submit_vote`, which
uses Prefect's own settings). Without that, a Prefect client with no API URL would start a
throw-away ephemeral server instead of reaching the stack's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from waguard.intake.app import create_app, create_ops_app
from waguard.intake.guard import ConnectionGuard, Limits
from waguard.intake.starter import PrefectRunStarter
from waguard.settings import Settings
from waguard.vault.client import VaultClient


def build(settings: Settings) -> tuple[Starlette, VaultClient]:
    """The intake app wired to Vault and Prefect, with Vault login checked now.

    Raises:
        ConfigError: a bad setting, routing policy or playbook policy, or Vault refused the login.
    """
    vault = VaultClient.from_settings(settings.vault)
    asyncio.run(vault.check())
    app = create_app(
        settings, vault, PrefectRunStarter(settings.prefect.api_url, launcher_dir=settings.launcher.dir)
    )
    # Replicas share the store: a live one starts what a killed one claimed but never started.
    app.state.intake.dispatcher.sweeps = True
    return app, vault


@contextlib.contextmanager
def prefect_api(settings: Settings) -> Iterator[None]:
    """Point Prefect's client settings at the configured server unless PREFECT_API_URL says otherwise."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = os.environ.get("PREFECT_API_URL") or settings.prefect.api_url
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def server_config(app: Starlette, host: str, port: int, settings: Settings, **options: Any) -> Any:
    """uvicorn's config for the public intake: httptools behind the connection guard (header limits,
    read timeouts, request deadline, connection cap from `settings.intake`), refusals counted."""
    import uvicorn

    refused = app.state.intake.metrics.connections_refused
    guard = ConnectionGuard(
        Limits.from_settings(settings.intake), lambda reason: refused.labels(reason).inc()
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_one_write(guard.protocol()),
        log_config=None,
        access_log=False,
        lifespan="on",
        backlog=2048,
        **options,
    )


class _OneWrite:
    """A request's view of its connection that sends a response's head with its body, in one send.

    uvicorn writes the head and the body apart: two send(2) calls, the costliest step of a small
    answer. The head is held until the next write (the body, in the same step) and prepended to it;
    a head alone (HEAD, or a body that does not come at once) goes out on the next loop turn. Order
    is kept whatever is written: a held head always precedes the bytes after it.
    """

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: Any, loop: Any) -> None:
        self._transport, self._loop = transport, loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif data[:5] == b"HTTP/" and data[9:12] != b"100" and data[-4:] == b"\r\n\r\n":
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _one_write(protocol: type) -> type:
    """`protocol` whose requests answer through `_OneWrite` (the guard's own refusals write directly)."""

    class OneWrite(protocol):
        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            cycle = getattr(self, "cycle", None)
            if cycle is not None and not isinstance(cycle.transport, _OneWrite):
                cycle.transport = _OneWrite(self.transport, self.loop)

    return OneWrite


def ops_config(app: Starlette, listen: str) -> Any:
    """uvicorn's config for `intake.metrics_listen` (health and metrics apart from the webhooks)."""
    import uvicorn

    host, _, port = listen.rpartition(":")
    return uvicorn.Config(
        create_ops_app(app), host=host, port=int(port), log_config=None, access_log=False, lifespan="off"
    )


async def serve_app(app: Starlette, host: str, port: int, settings: Settings) -> None:
    """Serve the public intake and, when configured, its ops address, until a signal stops them."""
    import uvicorn

    public = uvicorn.Server(server_config(app, host, port, settings))
    if not settings.intake.metrics_listen:
        await public.serve()
        return
    ops = uvicorn.Server(ops_config(app, settings.intake.metrics_listen))
    ops_task = asyncio.create_task(ops.serve())
    try:
        await public.serve()
    finally:
        ops.should_exit = True
        await ops_task


def configure_logging(settings: Settings, log_file: Path | None) -> None:
    """With `log_file`: the log goes there only, rotated by size (`intake.log_max_bytes`), replacing the
    console handler (whose file under `waguard up` never rotates). Without: left as the CLI set it."""
    if log_file is None:
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=settings.intake.log_max_bytes, backupCount=settings.intake.log_backups
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    say: Callable[[str], None] = print,
    log_file: Path | None = None,
) -> None:
    """Run the intake in the foreground until interrupted (`waguard intake`).

    Raises:
        ConfigError, VaultError, PortInUse: before anything listens, with a message naming the fix.
    """
    from waguard.local.processes import ensure_port_free

    host = host or settings.stack.host
    port = port or settings.stack.intake_port
    ensure_port_free("the intake service", host, port)
    listen = settings.intake.metrics_listen
    if listen:
        ensure_port_free(
            "the intake's metrics address", listen.rpartition(":")[0], int(listen.rpartition(":")[2])
        )
    configure_logging(settings, log_file)
    with prefect_api(settings):
        app, vault = build(settings)
        say(
            f"waguard intake listening on http://{host}:{port}"
            + (f", metrics and health on http://{listen}" if listen else "")
            + " (Ctrl-C to stop)"
        )
        try:
            asyncio.run(serve_app(app, host, port, settings))
        finally:
            vault.close()
