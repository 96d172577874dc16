"""HAProxy in front of the scaled profile's Prefect API replicas and intake replicas.

Two frontends: the Prefect API (and UI) on the stack's Prefect port, the intake on its intake port,
so every URL in the settings stays what the embedded profile uses. A replica that fails its health
check (`/api/ready`: process and database; the intake's `/readyz`) leaves the rotation within two
seconds, and a request that could not be sent to a replica is redispatched to the other one. Every
request is logged (status included) to the HAProxy log in the stack home.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from waguard.local.daemons import system_bin
from waguard.local.processes import ChildProcess


@dataclass(frozen=True)
class Backend:
    name: str
    bind: str  # host:port the frontend listens on
    servers: Sequence[str]  # host:port of each replica
    check_path: str
    timeout_server_s: int = 60  # Prefect's event websockets and long polls stay open


def haproxy_config(backends: Sequence[Backend]) -> str:
    """The whole config, pure text (tested on its own with `haproxy -c`)."""
    lines = [
        "global",
        "    log stdout format raw local0",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option redispatch",
        "    retries 2",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout http-request 30s",
        "    timeout tunnel 1h",
    ]
    for b in backends:
        lines += [
            "",
            f"frontend {b.name}",
            f"    bind {b.bind}",
            f"    default_backend {b.name}_replicas",
            "",
            f"backend {b.name}_replicas",
            "    balance roundrobin",
            f"    timeout server {b.timeout_server_s}s",
            f"    option httpchk GET {b.check_path}",
            "    http-check expect status 200",
            # A check waits 5 s and a server is DOWN after 3 misses: with 1 s and 2, both Prefect replicas
            # were marked DOWN together while serving under load (bench/scale.py: 189 answers of 503).
            "    timeout check 5s",
            "    default-server inter 1s fall 3 rise 1",
            *(f"    server {b.name}{i} {addr} check" for i, addr in enumerate(b.servers, 1)),
        ]
    return "\n".join(lines) + "\n"


def haproxy_process(home: Path, backends: Sequence[Backend], health_url: str) -> ChildProcess:
    state = home / "haproxy"
    state.mkdir(parents=True, exist_ok=True)
    config = state / "haproxy.cfg"
    config.write_text(haproxy_config(backends))
    return ChildProcess(name="HAProxy", argv=[system_bin("haproxy", "haproxy"), "-db", "-f", str(config)],
                        health_url=health_url, log_path=home / "logs" / "haproxy.log", ready_timeout_s=30)
