"""Running the intake for real: `waguard intake` (also what `waguard up` starts, as a child process).

Both build the app from settings with a VaultClient and the Prefect starter, and point Prefect's
client at `settings.prefect.api_url` (Slack votes go through `waguard.approval.submit_vote`, which
uses Prefect's own settings). Without that, a Prefect client with no API URL would start a
throw-away ephemeral server instead of reaching the stack's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator

from starlette.applications import Starlette

from waguard.intake.app import create_app
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
    app = create_app(settings, vault, PrefectRunStarter(settings.prefect.api_url))
    return app, vault


@contextlib.contextmanager
def prefect_api(settings: Settings) -> Iterator[None]:
    """Point Prefect's client settings at the configured server unless PREFECT_API_URL says otherwise."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = os.environ.get("PREFECT_API_URL") or settings.prefect.api_url
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def serve(settings: Settings, host: str | None = None, port: int | None = None,
          say: Callable[[str], None] = print) -> None:
    """Run the intake in the foreground until interrupted (`waguard intake`).

    Raises:
        ConfigError, VaultError, PortInUse: before anything listens, with a message naming the fix.
    """
    import uvicorn

    from waguard.servers import ensure_port_free

    host = host or settings.stack.host
    port = port or settings.stack.intake_port
    ensure_port_free("the intake service", host, port)
    with prefect_api(settings):
        app, vault = build(settings)
        say(f"waguard intake listening on http://{host}:{port} (Ctrl-C to stop)")
        try:
            uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
        finally:
            vault.close()
