"""Starting a playbook run: the `RunStarter` port, its Prefect implementation, and a recording one.

The intake decides *whether* a delivery opens a new incident (its own SQLite map); the starter only
creates the run. Prefect's idempotency key (the incident id) is the second guard: a start retried
after an ambiguous failure returns the run that already exists instead of making another.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

from waguard.playbook.names import DEPLOYMENTS
from waguard.playbook.policy import Playbook


class RunStarter(Protocol):
    """Creates a playbook run and returns its id without waiting for it to execute."""

    async def start(self, playbook: Playbook, parameters: dict[str, Any], idempotency_key: str) -> str:
        """Start (or find, for a known key) the run; return the flow-run id.

        Raises:
            Exception: any failure; the intake keeps the incident pending and retries.
        """
        ...

    async def has_ended(self, run_id: str) -> bool:
        """True once the run is in a final state (completed, failed, crashed, cancelled)."""
        ...


class PrefectRunStarter:
    """Starts runs of the playbooks' deployments through Prefect's API (create_flow_run_from_deployment)."""

    def __init__(self, api_url: str | None = None, *, deployments: Mapping[Playbook, str] = DEPLOYMENTS,
                 tags: tuple[str, ...] = ("waguard", "intake"), launcher_dir: Path | None = None) -> None:
        """Args:
            api_url: the Prefect API; None uses Prefect's own settings (PREFECT_API_URL).
            deployments: playbook -> "flow-name/deployment-name" (tests point these at a test flow).
            tags: tags every started run carries.
            launcher_dir: settings.launcher.dir: a launcher there is told each new run at once (best effort;
                without one, whatever executes the deployments picks the run up on its next poll).
        """
        self.api_url = api_url
        self.deployments = dict(deployments)
        self.tags = list(tags)
        self.launcher_dir = launcher_dir
        self._deployment_ids: dict[str, UUID] = {}  # by name: read once, not on every start

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[Any]:
        from prefect.client.orchestration import PrefectClient, get_client

        client = PrefectClient(self.api_url) if self.api_url else get_client()
        async with client:
            yield client

    async def start(self, playbook: Playbook, parameters: dict[str, Any], idempotency_key: str) -> str:
        """Create the run of `playbook`'s deployment and return its id (the run is not awaited).

        One API call on the alert's path: the deployment's id is read once and kept (read again if
        the deployment was re-created under the same name).
        """
        from prefect.exceptions import PrefectHTTPStatusError

        name = self.deployments[playbook]
        async with self._client() as client:
            try:
                run = await self._create(client, name, parameters, idempotency_key)
            except PrefectHTTPStatusError as err:
                if err.response.status_code != 404 or name not in self._deployment_ids:
                    raise
                self._deployment_ids.pop(name)
                run = await self._create(client, name, parameters, idempotency_key)
        if self.launcher_dir is not None:
            from waguard.launcher.pickup import notify_launcher

            notify_launcher(self.launcher_dir, run.id)  # one non-blocking datagram; never raises
        return str(run.id)

    async def _create(self, client: Any, name: str, parameters: dict[str, Any], idempotency_key: str) -> Any:
        deployment_id = self._deployment_ids.get(name)
        if deployment_id is None:
            deployment_id = self._deployment_ids[name] = (await client.read_deployment_by_name(name)).id
        return await client.create_flow_run_from_deployment(
            deployment_id, parameters=parameters, idempotency_key=idempotency_key, tags=self.tags,
            name=str(parameters.get("incident_id") or idempotency_key))

    async def post_update(self, run_id: str, update: Any) -> None:
        """Store an alert update (waguard.playbook.updates.RunUpdate) on the run and wake its approval."""
        from waguard.playbook.updates import post_update

        async with self._client() as client:
            await post_update(client, UUID(run_id), update)

    async def has_ended(self, run_id: str) -> bool:
        """Read the run's state from Prefect; a run Prefect does not know has not ended (it may be
        starting)."""
        from prefect.exceptions import ObjectNotFound

        async with self._client() as client:
            try:
                run = await client.read_flow_run(UUID(run_id))
            except ObjectNotFound:
                return False
        return bool(run.state and run.state.is_final())


@dataclass
class RecordingStarter:
    """Records starts instead of making runs (property tests, the benchmark, dry runs).

    Like Prefect, a repeated idempotency key returns the first run's id and starts nothing new.
    """

    starts: list[tuple[Playbook, dict[str, Any], str]] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)  # run ids a test declares finished
    updates: list[tuple[str, Any]] = field(default_factory=list)  # (run id, RunUpdate) delivered
    _by_key: dict[str, str] = field(default_factory=dict)

    async def start(self, playbook: Playbook, parameters: dict[str, Any], idempotency_key: str) -> str:
        """Record the start; return a stable fake run id for the key."""
        if idempotency_key not in self._by_key:
            self._by_key[idempotency_key] = str(uuid5(NAMESPACE_URL, f"waguard-run:{idempotency_key}"))
            self.starts.append((playbook, parameters, idempotency_key))
        return self._by_key[idempotency_key]

    async def has_ended(self, run_id: str) -> bool:
        return run_id in self.ended

    async def post_update(self, run_id: str, update: Any) -> None:
        self.updates.append((run_id, update))
