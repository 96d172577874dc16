"""Prometheus and Alertmanager for the local stack: detection as code, running.

`waguard up` starts Debian's `prometheus` and `prometheus-alertmanager` (installed by scripts/sysdeps.sh)
on loopback. Their configs are the shipped ones in detection/ with only the addresses and the token file
changed: Prometheus scrapes the intake's /metrics and loads detection/rules; Alertmanager posts to the
intake's /alerts/alertmanager with the stack's bearer token, read from a file only this user can read.
Without the binaries the stack still starts and says what is missing.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from waguard.local.processes import ChildProcess

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"


@dataclass(frozen=True)
class MonitoringPlan:
    """Where each part listens and what it reads; pure data, so the configs can be tested on their own."""

    detection_dir: Path
    home: Path
    host: str
    prometheus_port: int
    alertmanager_port: int
    intake_url: str  # the intake's public URL (alerts)
    metrics_url: str  # where the intake serves /metrics
    token_file: Path
    # Scrape and rule evaluation: None keeps the shipped config's (what production and the drills run);
    # a test may shorten it.
    interval_s: int | None = None
    more_metrics_urls: tuple[str, ...] = ()  # further intake replicas (the scaled profile): each scraped

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://{self.host}:{self.alertmanager_port}"


def alertmanager_config(plan: MonitoringPlan) -> dict[str, Any]:
    """The shipped detection/alertmanager.yml, posting to this intake with this token file."""
    config = yaml.safe_load((plan.detection_dir / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{plan.intake_url}/alerts/alertmanager"
            # Absolute: Alertmanager reads a relative path from its config's folder, not from ours.
            hook["http_config"]["authorization"]["credentials_file"] = str(plan.token_file.resolve())
    return config


def prometheus_config(plan: MonitoringPlan) -> dict[str, Any]:
    """The shipped detection/prometheus.yml, scraping this intake, loading the shipped rules."""
    config = yaml.safe_load((plan.detection_dir / "prometheus.yml").read_text())
    if plan.interval_s is not None:
        interval = f"{plan.interval_s}s"
        config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str((plan.detection_dir / "rules").resolve() / "*.yml")]
    metrics = [url.removeprefix("http://").removeprefix("https://")
               for url in (plan.metrics_url, *plan.more_metrics_urls)]
    for job in config["scrape_configs"]:
        if job["job_name"] == "waguard-intake":
            job["static_configs"] = [{"targets": metrics}]
    config["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [f"{plan.host}:{plan.alertmanager_port}"]}]}
    ]
    return config


def missing_binaries() -> list[str]:
    return [name for name in (PROMETHEUS, ALERTMANAGER) if shutil.which(name) is None]


def monitoring_processes(plan: MonitoringPlan) -> list[ChildProcess]:
    """Alertmanager first (Prometheus sends to it), then Prometheus; configs written under `home`."""
    state = plan.home / "monitoring"
    state.mkdir(parents=True, exist_ok=True)
    # A new stack is a new world (the simulators start afresh): series and notifications of the last
    # one would fire its alerts into this one (a spam rate from the previous drill run started a
    # leaked-secret run during the next run's forged-signature storm).
    for data in ("prometheus-data", "alertmanager-data"):
        shutil.rmtree(state / data, ignore_errors=True)
    am_config, prom_config = state / "alertmanager.yml", state / "prometheus.yml"
    am_config.write_text(yaml.safe_dump(alertmanager_config(plan), sort_keys=False))
    prom_config.write_text(yaml.safe_dump(prometheus_config(plan), sort_keys=False))
    logs = plan.home / "logs"
    return [
        ChildProcess(
            name="Alertmanager",
            argv=[
                shutil.which(ALERTMANAGER) or ALERTMANAGER,
                f"--config.file={am_config}",
                f"--storage.path={state / 'alertmanager-data'}",
                "--cluster.listen-address=",  # no gossip port on 0.0.0.0
                f"--web.listen-address={plan.host}:{plan.alertmanager_port}",
                f"--web.external-url={plan.alertmanager_url}",
            ],
            health_url=f"{plan.alertmanager_url}/-/ready",
            log_path=logs / "alertmanager.log",
            ready_timeout_s=30,
        ),
        ChildProcess(
            name="Prometheus",
            argv=[
                shutil.which(PROMETHEUS) or PROMETHEUS,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={state / 'prometheus-data'}",
                f"--web.listen-address={plan.host}:{plan.prometheus_port}",
                f"--web.external-url={plan.prometheus_url}",
                # Send a firing alert within seconds, not after the default 1 min resend delay.
                "--rules.alert.resend-delay=5s",
            ],
            health_url=f"{plan.prometheus_url}/-/ready",
            log_path=logs / "prometheus.log",
            ready_timeout_s=60,
        ),
    ]
