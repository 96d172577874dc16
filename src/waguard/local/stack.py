"""The local stack: everything waguard needs, on loopback, with no account anywhere.

`waguard up` and the drills start the same stack: a Prefect server on SQLite with its UI, an OpenBao
dev server seeded with the paths the playbooks read, and the Meta and Slack simulators seeded with a
demo business. The stack generates every credential itself at start (nothing secret is committed),
writes them into Vault, and seeds the simulators with the same values; nothing else is told them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from waguard.local.identities import identity_dir, identity_env
from waguard.local.monitoring import MonitoringPlan, missing_binaries, monitoring_processes
from waguard.local.processes import ChildProcess, ServedApp, ensure_port_free
from waguard.settings import Settings
from waguard.vault.identities import setup_identities

if TYPE_CHECKING:
    from waguard.meta.simulator.seed import Seed


@dataclass(frozen=True)
class StackUrls:
    prefect_ui: str
    prefect_api: str
    vault: str
    meta: str
    slack: str
    intake: str
    prometheus: str = ""  # empty: not started (the binaries are missing)
    alertmanager: str = ""

    def lines(self) -> list[tuple[str, str]]:
        detection = [(name, url) for name, url in (("Prometheus (detection rules)", self.prometheus),
                                                    ("Alertmanager", self.alertmanager)) if url]
        return [
            ("Prefect UI", self.prefect_ui),
            ("Prefect API", self.prefect_api),
            ("OpenBao (Vault)", self.vault),
            ("Meta Graph simulator", self.meta),
            ("Slack simulator", self.slack + "/api/"),
            ("Intake service", self.intake),
            *detection,
        ]


def prefect_env(settings: Settings) -> dict[str, str]:
    """Environment for every process that talks to the stack's Prefect server."""
    home = settings.stack.home.resolve()
    return {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": settings.prefect.api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        # Free the concurrency slot of a killed run within seconds of its lease lapsing (default 15 s).
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "2",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }


def _exe(name: str) -> str:
    """A console script installed next to this interpreter (the project venv), else on PATH."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


@dataclass
class LocalStack:
    """Start and stop the local stack. Used by `waguard up`, the drills and the end-to-end tests."""

    settings: Settings
    say: Callable[[str], None] = print
    _children: list[ChildProcess] = field(default_factory=list)
    _apps: list[ServedApp] = field(default_factory=list)

    @property
    def urls(self) -> StackUrls:
        s = self.settings.stack
        return StackUrls(
            prefect_ui=f"http://{s.host}:{s.prefect_port}",
            prefect_api=f"http://{s.host}:{s.prefect_port}/api",
            vault=f"http://{s.host}:{s.vault_port}",
            meta=f"http://{s.host}:{s.meta_port}",
            slack=f"http://{s.host}:{s.slack_port}",
            intake=f"http://{s.host}:{s.intake_port}",
        )

    def check_ports(self) -> None:
        """Fail before starting anything, naming the first port that is taken."""
        s = self.settings.stack
        for service, port in (("the Prefect server", s.prefect_port), ("OpenBao", s.vault_port),
                              ("the Meta simulator", s.meta_port), ("the Slack simulator", s.slack_port),
                              ("the intake service", s.intake_port), ("Prometheus", s.prometheus_port),
                              ("Alertmanager", s.alertmanager_port)):
            ensure_port_free(service, s.host, port)

    def start(self) -> StackUrls:
        """Start every service; on any failure stop what was started and re-raise."""
        self.check_ports()
        home = self.settings.stack.home
        home.mkdir(parents=True, exist_ok=True)
        try:
            self._start_prefect(home)
            credentials = self._start_vault(home)
            self._start_simulators(credentials)
            self._start_intake(home)
            monitoring = self._start_monitoring(home, credentials["alertmanager_token"])
            self._start_runner(home)
        except BaseException:
            self.stop()
            raise
        return self.urls if monitoring is None else replace(
            self.urls, prometheus=monitoring.prometheus_url, alertmanager=monitoring.alertmanager_url)

    def _start_prefect(self, home: Path) -> None:
        s = self.settings.stack
        self.say(f"starting Prefect server on {self.urls.prefect_ui} (first start migrates its database)")
        child = ChildProcess(
            name="Prefect server",
            argv=[_exe("prefect"), "server", "start", "--host", s.host, "--port", str(s.prefect_port)],
            health_url=f"{self.urls.prefect_api}/health",
            log_path=home / "logs" / "prefect-server.log",
            env=prefect_env(self.settings),
            ready_timeout_s=120,
        )
        self._children.append(child.start())

    def _start_vault(self, home: Path) -> dict[str, SecretStr]:
        from waguard.vault import devserver

        s = self.settings.stack
        root_token = secrets.token_urlsafe(24)
        self.say(f"starting OpenBao dev server on {self.urls.vault}")
        child = devserver.dev_server(host=s.host, port=s.vault_port, root_token=root_token,
                                     log_path=home / "logs" / "openbao.log",
                                     unseal_key_file=home / "vault-unseal-key")
        self._children.append(child.start())
        token_file = self.settings.vault.token_file or home / "vault-token"
        _write_private(token_file, root_token)
        credentials = generate_credentials()
        asyncio.run(seed_vault(self.settings, credentials))
        return credentials

    def _start_simulators(self, credentials: dict[str, SecretStr]) -> None:
        from waguard.meta.simulator import create_app as meta_app
        from waguard.meta.simulator import demo_seed
        from waguard.slack.simulator import create_app as slack_app

        s = self.settings.stack
        seed = with_messaging_service(
            demo_seed(app_secret=credentials["app_secret"].get_secret_value(),
                      system_user_token=credentials["meta_token"].get_secret_value(),
                      pin=credentials["two_step_pin"].get_secret_value()),
            credentials["messaging_token"].get_secret_value())
        # The dashboard's callback (Meta's Webhooks page) is the intake, as docs/production.md sets it.
        callback = f"{self.settings.intake.public_url.rstrip('/')}/webhooks/whatsapp"
        seed = seed.model_copy(update={"app": seed.app.model_copy(update={"callback_url": callback})})
        self._apps.append(
            ServedApp(meta_app(seed), host=s.host, port=s.meta_port, name="Meta simulator").start()
        )
        bot_token = credentials["slack_bot_token"].get_secret_value()
        self._apps.append(
            ServedApp(slack_app(bot_tokens={bot_token}), host=s.host, port=s.slack_port,
                      name="Slack simulator").start()
        )

    def _start_intake(self, home: Path) -> None:
        s = self.settings.stack
        self.say(f"starting the intake service on {self.urls.intake}")
        child = ChildProcess(
            name="intake service",
            # The log proper rotates by size (intake.log_max_bytes); the console file keeps only what is
            # printed before logging starts (and a crash's traceback).
            argv=[_exe("waguard"), "intake", "--host", s.host, "--port", str(s.intake_port),
                  "--log-file", str(home / "logs" / "intake.log")],
            health_url=f"{self._intake_ops_url()}/readyz",
            log_path=home / "logs" / "intake.console.log",
            env={**prefect_env(self.settings), **identity_env(self.settings, "intake")},
            ready_timeout_s=30,
        )
        self._children.append(child.start())

    def _start_monitoring(self, home: Path, alertmanager_token: SecretStr) -> MonitoringPlan | None:
        """Prometheus with detection/rules and Alertmanager posting to the intake (local/monitoring.py)."""
        missing = missing_binaries()
        if missing:
            self.say(f"not starting detection: {', '.join(missing)} not installed (run scripts/sysdeps.sh)")
            return None
        s = self.settings.stack
        token_file = home / "alertmanager-token"
        _write_private(token_file, alertmanager_token.get_secret_value())
        metrics = self._metrics_urls()
        plan = MonitoringPlan(self.settings.detection_dir.resolve(), home, s.host, s.prometheus_port,
                              s.alertmanager_port, self.urls.intake, metrics[0], token_file,
                              more_metrics_urls=tuple(metrics[1:]))
        self.say(f"starting Alertmanager on {plan.alertmanager_url} and Prometheus on {plan.prometheus_url}")
        for child in monitoring_processes(plan):
            self._children.append(child.start())
        return plan

    def _intake_ops_url(self) -> str:
        """Where the intake answers /readyz and /metrics: its metrics address when one is set."""
        listen = self.settings.intake.metrics_listen
        return f"http://{listen}" if listen else self.urls.intake

    def _metrics_urls(self) -> list[str]:
        """Every intake Prometheus scrapes (the scaled profile: each replica, not the balancer)."""
        return [self._intake_ops_url()]

    def _start_runner(self, home: Path) -> None:
        """Execute the deployments in prefect.yaml: the launcher, or Prefect's serve() runner if disabled."""
        if self.settings.launcher.enabled:
            self._start_launcher(home)
        else:
            self._start_served_runner(home)

    def _start_launcher(self, home: Path) -> None:
        """`waguard worker`: one pre-imported parent forks a process per run (src/waguard/launcher)."""
        from waguard.launcher.launcher import READY_FILE
        from waguard.local.processes import ServiceDidNotStart
        from waguard.playbook.names import DEPLOYMENTS

        launcher_dir = self.settings.launcher.dir.resolve()
        self.say(f"starting the launcher for the deployments in prefect.yaml (run files in {launcher_dir})")
        ready = launcher_dir / READY_FILE
        ready.unlink(missing_ok=True)
        last = list(DEPLOYMENTS.values())[-1]
        child = ChildProcess(
            name="launcher",
            argv=[_exe("waguard"), "worker", "--project", str(Path.cwd())],
            health_url=f"{self.urls.prefect_api}/deployments/name/{last}",
            log_path=home / "logs" / "launcher.log",
            env={**prefect_env(self.settings), **identity_env(self.settings, "playbook"),
                 "WAGUARD_LAUNCHER__DIR": str(launcher_dir)},
            ready_timeout_s=90,
        )
        self._children.append(child.start())
        deadline = time.monotonic() + 90  # deployments may exist from an earlier start: wait for our launcher
        while not ready.exists():
            if time.monotonic() > deadline or (child.proc is not None and child.proc.poll() is not None):
                raise ServiceDidNotStart(
                    f"the launcher did not become ready; see {home / 'logs' / 'launcher.log'}"
                )
            time.sleep(0.1)

    def _start_served_runner(self, home: Path) -> None:
        """Serve every deployment in prefect.yaml; ready once Prefect knows the last of them."""
        from waguard.playbook.names import DEPLOYMENTS

        self.say("serving the playbook deployments from prefect.yaml (launcher disabled)")
        last = list(DEPLOYMENTS.values())[-1]
        child = ChildProcess(
            name="deployment runner",
            argv=[sys.executable, "-m", "waguard.local.runner"],
            health_url=f"{self.urls.prefect_api}/deployments/name/{last}",
            log_path=home / "logs" / "runner.log",
            env={**prefect_env(self.settings), **identity_env(self.settings, "playbook"),
                 "WAGUARD_HOME": str(Path.cwd())},
            ready_timeout_s=90,
        )
        self._children.append(child.start())

    def stop(self) -> None:
        for app in reversed(self._apps):
            app.stop()
        for child in reversed(self._children):
            child.stop()
        self._apps.clear()
        self._children.clear()


MESSAGING_SYSTEM_USER = "7000000002"
MESSAGING_TOKEN_PATH = "meta/messaging-token"  # the playbooks' default leaked_token_path
PIN_PATH = "meta/two-step-pin"  # the numbers' shared two-step PIN (the playbooks' default pin_path)


def generate_credentials() -> dict[str, SecretStr]:
    """Fresh credentials for a local stack: random every start, known only to Vault and the simulators.

    Two Meta tokens: waguard's own (an admin system user that acts during incidents) and the
    consumers' messaging token (the one that typically leaks, and that playbooks rotate).
    """
    return {
        "app_secret": SecretStr(secrets.token_hex(16)),
        "meta_token": SecretStr("EAAG" + secrets.token_urlsafe(48)),
        "messaging_token": SecretStr("EAAG" + secrets.token_urlsafe(48)),
        "slack_bot_token": SecretStr("xoxb-" + secrets.token_hex(20)),
        "slack_signing_secret": SecretStr(secrets.token_hex(16)),
        "alertmanager_token": SecretStr(secrets.token_urlsafe(32)),
        "github_secret": SecretStr(secrets.token_hex(20)),
        "grafana_secret": SecretStr(secrets.token_hex(20)),
        "meta_verify_token": SecretStr(secrets.token_urlsafe(24)),
        "redaction_key": SecretStr(secrets.token_hex(32)),
        "two_step_pin": SecretStr(f"{secrets.randbelow(10**6):06d}"),
    }


def with_messaging_service(seed: Seed, token: str) -> Seed:
    """Add the consumers' system user and its token to a simulator seed."""
    from waguard.meta.simulator.seed import AssignmentSeed, SystemUserSeed, TokenSeed

    waba = seed.wabas[0].id
    scopes = ["whatsapp_business_management", "whatsapp_business_messaging"]
    return seed.model_copy(
        update={
            "system_users": [
                *seed.system_users,
                SystemUserSeed(
                    id=MESSAGING_SYSTEM_USER,
                    name="messaging-service",
                    role="EMPLOYEE",
                    created_by=seed.business_users[0].id,
                ),
            ],
            "assigned_users": [
                *seed.assigned_users,
                AssignmentSeed(waba_id=waba, user_id=MESSAGING_SYSTEM_USER, tasks=["MANAGE"]),
            ],
            # Issued and expiring like the seed's own token (a 60-day one): a clean business has no old token.
            "tokens": [
                *seed.tokens,
                TokenSeed(
                    id="tok-messaging-service",
                    value=token,
                    user_id=MESSAGING_SYSTEM_USER,
                    scopes=scopes,
                    issued_at=seed.tokens[0].issued_at,
                    expires_at=seed.tokens[0].expires_at,
                ),
            ],
        }
    )


async def seed_vault(settings: Settings, credentials: dict[str, SecretStr]) -> None:
    """Write the stack's credentials at the Vault paths the settings name, and ready transit."""
    from waguard.vault import devserver
    from waguard.vault.client import VaultClient

    vault = VaultClient.from_settings(settings.vault)
    await vault.check()
    await asyncio.to_thread(devserver.bootstrap_engines, vault, transit_key=settings.vault.evidence_key,
                            encryption_key=settings.evidence.encryption_key)
    paths = {
        "app_secret": settings.meta.app_secret_path,
        "meta_token": settings.meta.token_path,
        "messaging_token": MESSAGING_TOKEN_PATH,
        "slack_bot_token": settings.slack.bot_token_path,
        "slack_signing_secret": settings.slack.signing_secret_path,
        "alertmanager_token": settings.intake.alertmanager_token_path,
        "github_secret": settings.intake.github_secret_path,
        "grafana_secret": settings.intake.grafana_secret_path,
        "meta_verify_token": settings.intake.meta_verify_token_path,
        "redaction_key": settings.evidence.redaction_key_path,
        "two_step_pin": PIN_PATH,
    }
    for name, path in paths.items():
        await vault.write_secret(path, credentials[name])
    # From here on the root token only stops and seals the stack: every waguard process logs in as its
    # own least-privilege AppRole identity (deploy/vault/*.hcl).
    await asyncio.to_thread(setup_identities, vault.hvac_client, settings, identity_dir(settings))
    vault.close()


def _write_private(path: Path, value: str) -> None:
    """Write a credential file readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
