"""`waguard up --profile scaled`: Prefect's own distributed setup, all of it on one machine.

    HAProxy :prefect_port ─▶ prefect server start --no-services  ×2 ─┐
            :intake_port  ─▶ waguard intake                      ×2 ─┼─▶ PostgreSQL (Prefect; waguard's state)
    prefect server services start (scheduler, events, leases...) ────┤
                                                                     └─▶ Redis (messaging, leases, docket)
    waguard worker ×2 ──(load-balanced API)──▶ claim each run with a Pending proposal (one launcher wins)

Everything else (OpenBao, the simulators, Prometheus and Alertmanager) is the embedded profile's, and
every URL in the settings stays the same: HAProxy listens on the Prefect and intake ports. Each
process here is what one machine (or one replica set) runs in production: docs/production.md.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx

from waguard.launcher.recovery import HEARTBEAT_ENV
from waguard.local.daemons import PostgresPlan, RedisPlan
from waguard.local.haproxy import Backend, haproxy_process
from waguard.local.identities import identity_env
from waguard.local.processes import ChildProcess, ServiceDidNotStart, StackError, free_port, wait_until_ok
from waguard.local.stack import LocalStack, StackUrls, _exe, prefect_env
from waguard.settings import Settings

# The env var item 2 of issue 17 adds (waguard's shared state on PostgreSQL): set for every intake
# replica and launcher when this version of waguard has it.
STATE_DSN_ENV = "WAGUARD_STATE__DSN"
APPLICATION_NAME = "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_APPLICATION_NAME"
# Every Prefect client of the scaled profile (intakes, launchers, and the runs they fork) retries a 500
# as it does a 503 (5 tries over about a minute). With PostgreSQL away, an API replica answers a request
# that needs a new connection with 500 (asyncpg's refused connect is an OSError, which Prefect's
# is_client_retryable_exception does not list; tests/contract/test_prefect_pg_outage.py), and a run whose
# set_state got it crashed. Retrying set_state is safe: the client stamps each proposal with a
# transition id, and a repeat of one that committed is answered REJECT with the committed state
# (PreventDuplicateTransitions), which the engine and the launcher's claim both take as theirs. A retry
# in HAProxy would not do: it resends at once, to a replica on the same database.
CLIENT_RETRY_ENV = {"PREFECT_CLIENT_RETRY_EXTRA_CODES": "500"}


def has_state_dsn() -> bool:
    return "state" in Settings.model_fields


def prefect_server_env(settings: Settings, pg: PostgresPlan, redis: RedisPlan) -> dict[str, str]:
    """What every Prefect API replica and services process reads (prefect-fast-start-and-scale.md B.1)."""
    return {
        **prefect_env(settings),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": pg.dsn("prefect", driver="postgresql+asyncpg"),
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",  # one `database upgrade` before the replicas
        "PREFECT_SERVER_EVENTS_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE": "prefect_redis.cleanup_queue",
        "PREFECT_REDIS_MESSAGING_URL": redis.url(0),
        "PREFECT_SERVER_DOCKET_URL": redis.url(1),  # required once services may run in several processes
    }


@dataclass
class EventRoundTrip:
    """Ready when an event posted to the API has been persisted: the services process's event persister
    read it from Redis and wrote it to PostgreSQL (an API replica without services never does)."""

    api_url: str
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    posted: bool = False

    def __call__(self) -> bool:
        try:
            if not self.posted:
                event = {"id": self.event_id, "occurred": datetime.now(UTC).isoformat(),
                         "event": "waguard.stack.services-probe",
                         "resource": {"prefect.resource.id": "waguard.stack"}}
                self.posted = httpx.post(f"{self.api_url}/events", json=[event], timeout=5).is_success
                return False
            found = httpx.post(f"{self.api_url}/events/filter", timeout=5,
                               json={"filter": {"id": {"id": [self.event_id]}}, "limit": 1})
            return found.is_success and found.json().get("total", 0) >= 1
        except httpx.HTTPError:
            return False


@dataclass
class ScaledStack(LocalStack):
    """LocalStack with Prefect on PostgreSQL + Redis, replicas behind HAProxy, several launchers."""

    api_replicas: int = 2
    intake_replicas: int = 2
    launcher_count: int = 2
    apis: list[ChildProcess] = field(default_factory=list)
    services: ChildProcess | None = None
    intakes: list[ChildProcess] = field(default_factory=list)
    launchers: list[ChildProcess] = field(default_factory=list)
    pg: PostgresPlan | None = None
    _intake_ports: list[int] = field(default_factory=list)
    started_s: dict[str, float] = field(default_factory=dict)  # seconds each phase took

    def _ports(self, n: int) -> list[int]:
        return [free_port(self.settings.stack.host) for _ in range(n)]

    def start(self) -> StackUrls:
        """The embedded profile's parts, in overlapping phases: the databases and migration while Vault
        and the simulators start; the intakes and launchers together (2 cores: each phase is CPU-bound)."""
        self.check_ports()
        home = self.settings.stack.home
        home.mkdir(parents=True, exist_ok=True)
        (home / "logs").mkdir(exist_ok=True)
        t0 = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                databases = pool.submit(self._start_databases, home.resolve())
                credentials = self._start_vault(home)
                self._start_simulators(credentials)
                env = databases.result()
            self._start_prefect_servers(home, env)
            self._start_workers(home.resolve())
            monitoring = self._start_monitoring(home, credentials["alertmanager_token"])
        except BaseException:
            self.stop()
            raise
        self.started_s["total"] = time.monotonic() - t0
        return self.urls if monitoring is None else replace(
            self.urls, prometheus=monitoring.prometheus_url, alertmanager=monitoring.alertmanager_url)

    def _start_databases(self, home: Path) -> dict[str, str]:
        """PostgreSQL, Redis, then Prefect's migration; returns the Prefect servers' environment."""
        t0 = time.monotonic()
        host = self.settings.stack.host
        pg_port, redis_port = self._ports(2)
        self.pg = PostgresPlan(home, host, pg_port)
        redis = RedisPlan(home, host, redis_port)
        self.say(f"starting PostgreSQL on {host}:{pg_port} and Redis on {host}:{redis_port}")
        self.pg.initialise()
        self._children.append(self.pg.process().start())
        asyncio.run(self.pg.create_databases())
        self._children.append(redis.process().start())
        env = prefect_server_env(self.settings, self.pg, redis)
        self.started_s["postgres+redis"] = time.monotonic() - t0
        self.say("migrating Prefect's database (prefect server database upgrade)")
        with open(home / "logs" / "prefect-migrate.log", "ab") as log:
            migrated = subprocess.run([_exe("prefect"), "server", "database", "upgrade", "-y"],
                                      env={**_environ(), **env}, stdout=log, stderr=subprocess.STDOUT)
        if migrated.returncode != 0:
            raise StackError(f"Prefect's migration failed; see {home / 'logs' / 'prefect-migrate.log'}")
        self.started_s["migrate"] = time.monotonic() - t0 - self.started_s["postgres+redis"]
        return env

    def _start_prefect_servers(self, home: Path, env: dict[str, str]) -> None:
        """API replicas and the services process together, then HAProxy in front of them."""
        t0, home, host = time.monotonic(), home.resolve(), self.settings.stack.host
        api_ports = self._ports(self.api_replicas)
        self.say(f"starting {self.api_replicas} Prefect API replicas (no services) and the services process")
        self.apis = [ChildProcess(
            name=f"Prefect API {i}",
            argv=[_exe("prefect"), "server", "start", "--host", host, "--port", str(port), "--no-services"],
            health_url=f"http://{host}:{port}/api/ready",
            log_path=home / "logs" / f"prefect-api-{i}.log",
            # Only the first registers Prefect's block types: two replicas doing it at once on a fresh
            # database collide (UniqueViolation on uq_block_type__slug; the loser exits at start-up).
            env={**env, APPLICATION_NAME: f"prefect-api-{i}",  # one name per role in pg_stat_activity
                 "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "true" if i == 1 else "false"},
            ready_timeout_s=120,
        ) for i, port in enumerate(api_ports, 1)]
        self.services = ChildProcess(
            name="Prefect services", argv=[_exe("prefect"), "server", "services", "start"], health_url="",
            log_path=home / "logs" / "prefect-services.log", ready_timeout_s=120,
            env={**env, APPLICATION_NAME: "prefect-services",
                 "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false"},
            probe=EventRoundTrip(f"http://{host}:{api_ports[0]}/api"))
        self._start_together(self.apis[:1])
        self._start_together([*self.apis[1:], self.services])
        self._intake_ports = self._ports(self.intake_replicas)
        s = self.settings.stack
        self.say(f"starting HAProxy: Prefect API on {self.urls.prefect_api}, intake on {self.urls.intake}")
        self._children.append(haproxy_process(home, [
            Backend("prefect", f"{host}:{s.prefect_port}", [f"{host}:{p}" for p in api_ports], "/api/ready"),
            Backend("intake", f"{host}:{s.intake_port}", [f"{host}:{p}" for p in self._intake_ports],
                    "/readyz", timeout_server_s=35),
        ], health_url=f"{self.urls.prefect_api}/ready").start())
        self.started_s["prefect"] = time.monotonic() - t0

    def _start_together(self, children: list[ChildProcess]) -> None:
        """Start children in parallel (each waits for its own health); all or none stay running."""
        with ThreadPoolExecutor(max_workers=len(children)) as pool:
            results = list(pool.map(_start_or_error, children))
        self._children.extend(c for c, err in zip(children, results, strict=True) if err is None)
        errors = [err for err in results if err is not None]
        if errors:
            raise errors[0]

    def shared_state_env(self) -> dict[str, str]:
        """WAGUARD_STATE__DSN for the replicas and runs, once waguard has the PostgreSQL store setting."""
        if self.pg is None or not has_state_dsn():
            return {}
        return {STATE_DSN_ENV: self.pg.dsn("waguard")}

    def _start_workers(self, home: Path) -> None:
        """The intake replicas and the launchers, started together; then the intake through HAProxy."""
        t0 = time.monotonic()
        self._start_together([*self._intake_children(home), *self._launcher_children(home)])
        wait_until_ok(f"{self.urls.intake}/readyz", 10, service="HAProxy's intake frontend")
        asyncio.run(self._ensure_recovery())
        self.started_s["intakes+launchers"] = time.monotonic() - t0

    async def _ensure_recovery(self) -> None:
        """Prefect's automations that crash a dead launcher's runs and run them again
        (waguard.launcher.recovery); the deployments' flows are known once the launchers registered them."""
        from prefect.client.orchestration import PrefectClient

        from waguard.launcher.recovery import ensure_recovery_automations
        from waguard.playbook.names import FLOW_NAMES

        async with PrefectClient(self.urls.prefect_api) as client:
            flows = {(await client.read_flow(d.flow_id)).name for d in await client.read_deployments()}
            names = await ensure_recovery_automations(client, flows, FLOW_NAMES.values())
        self.say(f"Prefect automations for runs of a dead launcher: {', '.join(names)}")

    def _intake_children(self, home: Path) -> list[ChildProcess]:
        s = self.settings.stack
        if not has_state_dsn():
            self.say("no shared-state setting in this waguard: each intake replica keeps its own SQLite")
        self.say(f"starting {self.intake_replicas} intake replicas behind {self.urls.intake}")
        base = {**prefect_env(self.settings), **identity_env(self.settings, "intake"),
                **self.shared_state_env(), **CLIENT_RETRY_ENV}
        state_dir = self.settings.intake.state_dir.resolve()
        self.intakes = [ChildProcess(
            name=f"intake {i}",
            argv=[_exe("waguard"), "intake", "--host", s.host, "--port", str(port),
                  "--log-file", str(home / "logs" / f"intake-{i}.log")],
            health_url=f"http://{s.host}:{port}/readyz",
            log_path=home / "logs" / f"intake-{i}.console.log",
            # Each replica's own files (audit log, and its SQLite state until the shared store is set):
            # never one SQLite file written by two replicas. /readyz and /metrics on the public port, so
            # HAProxy's check and Prometheus reach each replica.
            env={**base, "WAGUARD_INTAKE__STATE_DIR": str(state_dir / f"replica-{i}"),
                 "WAGUARD_INTAKE__METRICS_LISTEN": ""},
            ready_timeout_s=60,
        ) for i, port in enumerate(self._intake_ports, 1)]
        return self.intakes

    def _intake_ops_url(self) -> str:
        return self.urls.intake

    def _metrics_urls(self) -> list[str]:
        return [c.health_url.removesuffix("/readyz") for c in self.intakes]

    def _launcher_children(self, home: Path) -> list[ChildProcess]:
        """`waguard worker` × launcher_count, each with its own run directory, all on the balanced API.

        The intake's pickup hint goes to the first (settings.launcher.dir); every launcher also polls
        the deployments' scheduled runs, and Prefect accepts one Pending proposal per run, so exactly
        one launcher executes each run (src/waguard/launcher/launcher.py)."""
        from waguard.launcher.launcher import READY_FILE

        base_dir = self.settings.launcher.dir.resolve()
        more = range(2, self.launcher_count + 1)
        dirs = [base_dir, *(base_dir.with_name(f"{base_dir.name}-{i}") for i in more)]
        self.say(f"starting {self.launcher_count} launchers ({', '.join(map(str, dirs))})")
        # Heartbeats from every run, for the automations that recover a dead launcher's runs.
        env = {**prefect_env(self.settings), **identity_env(self.settings, "playbook"),
               **self.shared_state_env(), **CLIENT_RETRY_ENV, **HEARTBEAT_ENV}
        for d in dirs:
            (d / READY_FILE).unlink(missing_ok=True)
        self.launchers = [ChildProcess(
            name=f"launcher {i}", argv=[_exe("waguard"), "worker", "--project", str(Path.cwd())],
            health_url="", log_path=home / "logs" / f"launcher-{i}.log",
            env={**env, "WAGUARD_LAUNCHER__DIR": str(d)}, ready_timeout_s=120,
            probe=partial(Path.exists, d / READY_FILE),
        ) for i, d in enumerate(dirs, 1)]
        return self.launchers


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _start_or_error(child: ChildProcess) -> ServiceDidNotStart | None:
    try:
        child.start()
    except ServiceDidNotStart as err:
        return err
    return None
