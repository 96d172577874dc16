"""A run's ports to Meta, Vault and Slack, built once per run from settings.

Credentials are read from Vault here and live only in memory (as `SecretStr` inside the
clients). Flow parameters and task results carry Vault paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import SecretStr

from waguard.meta.client import GraphClient, quiet_http_loggers
from waguard.settings import Settings
from waguard.slack.client import SlackClient
from waguard.state.backends import open_ledger
from waguard.vault.client import VaultClient


class Ports:
    """The clients one run uses. Build with `open_ports`.

    A plain class on purpose: Prefect walks dataclass and model task arguments and rebuilds them,
    which would hand each task a copy; the clients must stay shared (and `reload_graph` seen by all).
    """

    def __init__(self, settings: Settings, vault: VaultClient, graph: GraphClient, slack: SlackClient,
                 evidence_vault: VaultClient | None = None, *, keys: GraphKeys | None = None) -> None:
        self.settings, self.vault, self.graph, self.slack = settings, vault, graph, slack
        # Evidence redacts with every secret and signs: under its own Vault identity when one is set.
        self.evidence_vault = evidence_vault or vault
        self._keys = keys

    @property
    def keys(self) -> GraphKeys:
        """Whose app secret and token the Graph client is keyed with: the run's business's."""
        return self._keys or GraphKeys.of(self.settings)

    @property
    def app_secret_path(self) -> str:
        """Vault path of the app secret of the business this run acts on."""
        return self.keys.app_secret_path

    async def reload_graph(self) -> None:
        """Rebuild the Graph client from Vault (after the app secret or our token changed)."""
        old = self.graph
        self.graph = await graph_from_vault(self.settings, self.vault, keys=self.keys)
        await old.aclose()


@dataclass(frozen=True)
class GraphKeys:
    """The Vault paths a Graph client is keyed with: one business's app secret and waguard's token there
    (an `Account` has both; the settings' are the single-business default)."""

    app_secret_path: str
    token_path: str

    @classmethod
    def of(cls, settings: Settings) -> GraphKeys:
        return cls(settings.meta.app_secret_path, settings.meta.token_path)


async def graph_from_vault(settings: Settings, vault: VaultClient, *, app_secret_version: int | None = None,
                           token: SecretStr | None = None, keys: GraphKeys | None = None) -> GraphClient:
    """A Graph client keyed with what Vault holds at `keys` (default: the settings' business), a given
    app-secret version (e.g. the old one)."""
    meta, keys = settings.meta, keys or GraphKeys.of(settings)
    token = token or (await vault.read_secret(keys.token_path)).value
    secret = (await vault.read_secret(keys.app_secret_path, version=app_secret_version)).value
    return GraphClient.from_settings(meta, token=token, app_secret=secret, ledger=open_ledger(settings))


def evidence_login(settings: Settings) -> VaultClient | None:
    """A second Vault client for evidence signing, logged in as the evidence AppRole (its secret-id file
    is named by `vault.evidence_secret_id_file`); None when the settings name no evidence role."""
    vault = settings.vault
    if vault.evidence_role_id is None or vault.evidence_secret_id_file is None:
        return None
    return VaultClient.from_settings(vault.model_copy(update={
        "auth_method": "approle", "role_id": vault.evidence_role_id,
        "secret_id_file": vault.evidence_secret_id_file, "token": None}))


@contextlib.asynccontextmanager
async def open_ports(settings: Settings, keys: GraphKeys | None = None) -> AsyncIterator[Ports]:
    """The run's clients; Graph keyed with `keys` (the run's business; default: the settings')."""
    quiet_http_loggers()
    vault = VaultClient.from_settings(settings.vault)
    await vault.check()
    evidence = evidence_login(settings)
    if evidence is not None:
        await evidence.check()  # a wrong evidence login fails the run now, not at its first snapshot
    graph = await graph_from_vault(settings, vault, keys=keys)
    slack_token = (await vault.read_secret(settings.slack.bot_token_path)).value
    slack = SlackClient.from_settings(settings.slack, slack_token)
    ports = Ports(settings, vault, graph, slack, evidence, keys=keys)
    try:
        yield ports
    finally:
        await ports.graph.aclose()
        for client in {id(c): c for c in (vault, ports.evidence_vault)}.values():
            with contextlib.suppress(Exception):
                client.close()
