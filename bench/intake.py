"""Benchmark of the intake service, side by side with a bare endpoint, plus a storm and a flood.

    .venv/bin/python bench/intake.py [--deliveries 20000] [--storm 6000] [--concurrency 16] [--rounds 5]
                                     [--flood-seconds 30] [--idle 1000]

What runs: a real OpenBao dev server holding the secrets; the intake app under uvicorn in a child
process (one worker, the production server config: httptools behind the connection guard), with a
recording run starter (no Prefect: the start is a background step and is not what is measured); a
bare Starlette endpoint (reads the body, answers 200) under the same uvicorn in another child; a load
generator in this process speaking raw HTTP/1.1 over keep-alive connections, every request built and
signed before the clock starts. Runs started are read from the service's own /metrics.

Goals, all in this one run:
- verified deliveries/s >= 0.5 x the bare endpoint's rate, p99 <= 10 ms;
- a storm about one incident per source (an Alertmanager group; a GitHub alert) starts exactly one
  run per incident;
- under a forged flood at the highest rate the generator reaches, plus `--idle` idle connections
  held open: a valid alert is answered within 50 ms and starts its run; disk growth under 1 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pydantic import SecretStr  # noqa: E402

from waguard.intake.verify import hub_signature  # noqa: E402
from waguard.local.processes import free_port, wait_until_ok  # noqa: E402
from waguard.settings import IntakeSettings, Settings, VaultSettings  # noqa: E402

GOAL_RATIO, GOAL_P99_MS = 0.5, 10.0
GOAL_FLOOD_ALERT_MS, GOAL_FLOOD_DISK = 50.0, 1_048_576


def settings_for(vault_addr: str, token_file: Path, state_dir: Path) -> Settings:
    return Settings(
        _env_file=None,
        vault=VaultSettings(addr=vault_addr, token_file=token_file),  # type: ignore[call-arg]
        intake=IntakeSettings(state_dir=state_dir),
        runbooks_dir=ROOT / "runbooks",
    )


# --- the server (child process) -------------------------------------------------------------------


def serve(port: int, vault_addr: str, token_file: Path, state_dir: Path) -> None:
    """The intake as `waguard intake` runs it (guarded server config, rotating log file)."""
    import uvicorn

    from waguard.intake.app import create_app
    from waguard.intake.server import configure_logging, server_config
    from waguard.intake.starter import RecordingStarter
    from waguard.vault.client import VaultClient

    settings = settings_for(vault_addr, token_file, state_dir)
    configure_logging(settings, state_dir / "intake.log")
    vault = VaultClient.from_settings(settings.vault)
    app = create_app(settings, vault, RecordingStarter())
    uvicorn.Server(server_config(app, "127.0.0.1", port, settings)).run()


def serve_bare(port: int) -> None:
    """The baseline: a Starlette endpoint that reads the body and answers 200, same uvicorn."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def endpoint(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"outcome": "ok"})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/alerts/{source}", endpoint, methods=["POST"]),
            Route("/webhooks/whatsapp", endpoint, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False, http="httptools")


# --- requests -------------------------------------------------------------------------------------


def raw_request(path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def dumps(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def am_body(group: str, waba: str, n_alerts: int, salt: int) -> bytes:
    labels = {"alertname": group, "waba_id": waba, "severity": "critical", "playbook": "template-abuse"}
    alerts = [
        {
            "status": "firing",
            "labels": {**labels, "template": f"t{i}"},
            "annotations": {},
            "startsAt": f"2026-11-24T16:{salt % 60:02d}:{i % 60:02d}Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://bench",
            "fingerprint": f"{salt:08x}{i:08x}",
        }
        for i in range(n_alerts)
    ]
    return dumps(
        {
            "receiver": "intake",
            "status": "firing",
            "version": "4",
            "truncatedAlerts": 0,
            "groupKey": f'{{}}:{{alertname="{group}", waba_id="{waba}"}}',
            "alerts": alerts,
            "groupLabels": {"alertname": group, "waba_id": waba},
            "commonLabels": labels,
            "commonAnnotations": {},
            "externalURL": "http://bench",
        }
    )


def github_body(number: int, repo: int, action: str) -> bytes:
    return dumps(
        {
            "action": action,
            "alert": {"number": number, "secret_type": "facebook_access_token"},
            "repository": {"id": repo, "full_name": "bench/repo"},
        }
    )


def meta_body(waba: str, name: str, t: int) -> bytes:
    return dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": waba,
                    "time": t,
                    "changes": [
                        {
                            "field": "message_template_status_update",
                            "value": {
                                "event": "FLAGGED",
                                "message_template_id": 5,
                                "message_template_name": name,
                                "message_template_language": "en_US",
                                "reason": None,
                            },
                        }
                    ],
                }
            ],
        }
    )


def build(kind: str, i: int, creds: dict[str, str], incidents: int) -> bytes:
    """One correctly signed delivery; about `incidents` distinct incidents per source."""
    k = i % incidents
    if kind == "alertmanager":
        body = am_body(f"Bench{k}", str(100 + k), 1 + i % 3, i)
        return raw_request(
            "/alerts/alertmanager",
            {"Authorization": f"Bearer {creds['am']}", "Content-Type": "application/json"},
            body,
        )
    if kind == "github":
        body = github_body(1 + k, 4242, "created" if i % 2 else "publicly_leaked")
        return raw_request(
            "/alerts/github",
            {
                "X-GitHub-Event": "secret_scanning_alert",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": hub_signature(creds["github"], body),
                "Content-Type": "application/json",
            },
            body,
        )
    body = meta_body(str(3000 + k), f"promo_{i % 7}", 1_764_000_000 + i)
    return raw_request(
        "/webhooks/whatsapp",
        {"X-Hub-Signature-256": hub_signature(creds["app"], body), "Content-Type": "application/json"},
        body,
    )


# --- the load generator ---------------------------------------------------------------------------

_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


async def drive(
    port: int, requests: list[bytes], concurrency: int
) -> tuple[float, list[float], dict[int, int]]:
    """Send every request over `concurrency` keep-alive connections; return (seconds, latencies, statuses)."""
    queue = list(reversed(requests))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                req = queue.pop()
                t0 = time.perf_counter()
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                m = _LENGTH.search(head)
                if m:
                    await reader.readexactly(int(m.group(1)))
                latencies.append(time.perf_counter() - t0)
                status = int(head.split(b" ", 2)[1])
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies, statuses


def runs_started(port: int) -> dict[str, int]:
    """Runs started so far, per playbook, from the service's /metrics."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    out: dict[str, int] = {}
    for playbook, value in re.findall(
        r'^waguard_intake_runs_started_total\{playbook="([^"]+)"\} (\S+)$', text, re.M
    ):
        out[playbook] = int(float(value))
    return out


def total(runs: dict[str, int]) -> int:
    return sum(runs.values())


def http_parser() -> str:
    """What uvicorn's "auto" picks: httptools when installed, else the pure-Python h11."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11 (install httptools for ~30% more)"
    return "httptools"


def settled_runs(port: int) -> dict[str, int]:
    """The runs-started counters once they have stopped moving (starts run in the background)."""
    last, steady = runs_started(port), 0
    while steady < 5:
        time.sleep(0.1)
        now = runs_started(port)
        steady = steady + 1 if now == last else 0
        last = now
    return last


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


async def flood(
    port: int, forged: list[bytes], seconds: float, concurrency: int, idle: int, probes: list[bytes]
) -> tuple[int, float, list[float], list[int]]:
    """Forged requests as fast as `concurrency` connections go for `seconds`, with `idle` connections
    held open; a valid alert (one of `probes`) sent on a fresh connection every few seconds.
    Returns (forged sent, seconds, probe latencies, probe statuses)."""
    stop = time.perf_counter() + seconds
    start = stop - seconds
    sent = 0

    async def holder() -> None:  # an idle connection, opened again whenever the server closes it
        while time.perf_counter() < stop:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            try:
                await asyncio.wait_for(reader.read(1), max(0.0, stop - time.perf_counter()))
            except (TimeoutError, OSError):
                pass
            writer.close()

    holders = [asyncio.create_task(holder()) for _ in range(idle)]

    async def attacker() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = 0
        try:
            while time.perf_counter() < stop:
                writer.write(forged[i % len(forged)])
                i += 1
                head = await reader.readuntil(b"\r\n\r\n")
                m = _LENGTH.search(head)
                if m:
                    await reader.readexactly(int(m.group(1)))
                sent += 1
        finally:
            writer.close()

    latencies: list[float] = []
    statuses: list[int] = []

    async def prober() -> None:
        # Each valid alert is sent and timed by a process of its own: this process's event loop is
        # busy with the flood, and its delays are not the intake's.
        span = max(seconds - 1.0, 0.0)  # spread over the flood, each sent a second before its end
        for n, probe in enumerate(probes, start=1):
            await asyncio.sleep(max(0.0, start + span * n / (len(probes) + 1) - time.perf_counter()))
            if time.perf_counter() > stop - 1:
                break
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PROBE, str(port), probe.hex(), stdout=asyncio.subprocess.PIPE
            )
            out, _ = await child.communicate()
            status, ms = out.decode().split()
            latencies.append(float(ms) / 1000)
            statuses.append(int(status))

    start = time.perf_counter()
    attackers = asyncio.gather(*(attacker() for _ in range(concurrency)))
    await asyncio.gather(prober(), attackers)
    elapsed = stop - start
    await asyncio.gather(*holders)
    return sent, elapsed, latencies, statuses


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), to tell the server's cost from the
    machine's load: the load generator and anything else running share the same cores."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# One request on a fresh connection, timed by a process of its own that imports nothing heavy; prints
# the status and the milliseconds from connecting to the whole answer.
PROBE = """
import re, socket, sys, time
port, request = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
t0 = time.perf_counter()
with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
    s.sendall(request)
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        data += s.recv(65536)
    head, _, rest = data.partition(b"\\r\\n\\r\\n")
    m = re.search(rb"content-length:\\s*(\\d+)", head, re.I)
    while m and len(rest) < int(m.group(1)):
        rest += s.recv(65536)
print(int(head.split(b" ", 2)[1]), f"{(time.perf_counter() - t0) * 1000:.2f}")
"""


def start_child(argv: list[str], log: Path, health: str) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115
    child = subprocess.Popen(
        [sys.executable, __file__, *argv],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    wait_until_ok(health, 60, service=argv[0], alive=child)
    return child


def github_request(creds: dict[str, str], number: int, repo: int) -> bytes:
    body = github_body(number, repo, "created")
    return raw_request(
        "/alerts/github",
        {
            "X-GitHub-Event": "secret_scanning_alert",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": hub_signature(creds["github"], body),
            "Content-Type": "application/json",
        },
        body,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--storm", type=int, default=6_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="alternating bare/intake rounds")
    parser.add_argument("--flood-seconds", type=float, default=30.0)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument(
        "--serve", nargs=4, metavar=("PORT", "VAULT", "TOKEN_FILE", "STATE"), help=argparse.SUPPRESS
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], Path(args.serve[2]), Path(args.serve[3]))
        return 0
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0

    from waguard.vault import devserver
    from waguard.vault.client import VaultClient

    work = Path(tempfile.mkdtemp(prefix="waguard-bench-"))
    root_token = secrets.token_urlsafe(24)
    token_file = work / "vault-token"
    token_file.write_text(root_token)
    token_file.chmod(0o600)
    bao = devserver.dev_server(port=free_port(), root_token=root_token, log_path=work / "openbao.log").start()
    children: list[subprocess.Popen[bytes]] = []
    try:
        vault_addr = bao.health_url.split("/v1/")[0]
        state = work / "intake"
        cfg = settings_for(vault_addr, token_file, state)
        creds = {
            "am": secrets.token_urlsafe(32),
            "github": secrets.token_hex(20),
            "app": secrets.token_hex(16),
        }
        vault = VaultClient.from_settings(cfg.vault)

        async def seed() -> None:
            await vault.check()
            for path, value in [
                (cfg.intake.alertmanager_token_path, creds["am"]),
                (cfg.intake.github_secret_path, creds["github"]),
                (cfg.meta.app_secret_path, creds["app"]),
            ]:
                await vault.write_secret(path, SecretStr(value))

        asyncio.run(seed())

        port, bare_port = free_port(), free_port()
        server = start_child(
            ["--serve", str(port), vault_addr, str(token_file), str(state)],
            work / "intake.console.log",
            f"http://127.0.0.1:{port}/healthz",
        )
        children.append(server)
        bare = start_child(
            ["--serve-bare", str(bare_port)], work / "bare.log", f"http://127.0.0.1:{bare_port}/healthz"
        )
        children.append(bare)

        # -- throughput, side by side: the same requests to the bare endpoint and to the intake ----
        kinds = ["alertmanager", "github", "meta"]
        rng = random.Random(7)
        warm = [build(rng.choice(kinds), i, creds, 20) for i in range(1000)]
        asyncio.run(drive(port, warm, args.concurrency))
        asyncio.run(drive(bare_port, warm, args.concurrency))
        requests = [build(kinds[i % 3], 1000 + i, creds, 20) for i in range(args.deliveries)]
        # Alternating rounds (bare, intake, bare, ...): the machine's load, shared with whatever else
        # runs, changes from second to second; both sides see the same conditions, and each round's
        # ratio shows how much they moved.
        bare_s = seconds = bare_cpu_s = cpu_s = 0.0
        bare_lat, latencies, round_ratios = [], [], []
        bare_statuses: dict[int, int] = {}
        statuses: dict[int, int] = {}
        before = runs_started(port)
        size = -(-len(requests) // args.rounds)
        for chunk in (requests[i : i + size] for i in range(0, len(requests), size)):
            c0 = cpu_seconds(bare.pid)
            b_s, b_lat, b_st = asyncio.run(drive(bare_port, chunk, args.concurrency))
            bare_cpu_s += cpu_seconds(bare.pid) - c0
            c0 = cpu_seconds(server.pid)
            i_s, i_lat, i_st = asyncio.run(drive(port, chunk, args.concurrency))
            cpu_s += cpu_seconds(server.pid) - c0
            bare_s, seconds = bare_s + b_s, seconds + i_s
            bare_lat, latencies = bare_lat + b_lat, latencies + i_lat
            for mine, theirs in ((bare_statuses, b_st), (statuses, i_st)):
                for k, v in theirs.items():
                    mine[k] = mine.get(k, 0) + v
            round_ratios.append(b_s / i_s)
        bare_cpu_us = bare_cpu_s / len(requests) * 1e6
        cpu_us = cpu_s / len(requests) * 1e6
        bare_rate = len(requests) / bare_s
        rate = len(requests) / seconds
        p50, p99 = pct(latencies, 0.50), pct(latencies, 0.99)
        runs_throughput = total(runs_started(port)) - total(before)
        ok = statuses.get(200, 0)

        # -- storms: one incident per source, each told `storm` times ---------------------------
        am_headers = {"Authorization": f"Bearer {creds['am']}", "Content-Type": "application/json"}
        first = am_body("StormGroup", "999", 1, 0)
        storms = {
            # a third exact re-deliveries of one body (replays), the rest group updates of the same group
            "alertmanager group": [
                raw_request(
                    "/alerts/alertmanager",
                    am_headers,
                    first if i % 3 == 0 else am_body("StormGroup", "999", 1 + i % 5, i),
                )
                for i in range(args.storm)
            ],
            # one secret-scanning alert, delivered again and again (each with its own delivery id)
            "github alert": [github_request(creds, 777, 999) for _ in range(args.storm)],
        }
        storm_lines, storm_ok = [], True
        for name, storm in storms.items():
            before = settled_runs(port)
            storm_s, storm_lat, storm_statuses = asyncio.run(drive(port, storm, args.concurrency))
            started = total(settled_runs(port)) - total(before)
            storm_ok = storm_ok and started == 1 and set(storm_statuses) == {200}
            storm_lines.append(
                f"  storm, {name:<18}: {len(storm)} deliveries in {storm_s:.2f} s "
                f"({len(storm) / storm_s:,.0f}/s, p99 {pct(storm_lat, 0.99):.2f} ms; "
                f"statuses {dict(sorted(storm_statuses.items()))}) -> {started} run(s) started "
                "(goal exactly 1)"
            )

        # -- flood: forged deliveries as fast as they go, idle connections held, valid alerts probing
        forged = []
        for i in range(500):
            body = am_body(f"Forged{i}", str(5000 + i), 1, i)
            forged.append(
                raw_request(
                    "/alerts/alertmanager",
                    {"Authorization": "Bearer forged-" + str(i % 7), "Content-Type": "application/json"},
                    body,
                )
            )
            gh = github_body(10_000 + i, 31337, "created")
            forged.append(
                raw_request(
                    "/alerts/github",
                    {
                        "X-GitHub-Event": "secret_scanning_alert",
                        "X-GitHub-Delivery": str(uuid.uuid4()),
                        "X-Hub-Signature-256": "sha256=" + "0" * 64,
                        "Content-Type": "application/json",
                    },
                    gh,
                )
            )
        probes = [github_request(creds, 50_000 + n, 4343) for n in range(5)]
        settled_before = settled_runs(port)
        disk_before = disk_bytes(state)
        sent, flood_s, probe_lat, probe_statuses = asyncio.run(
            flood(port, forged, args.flood_seconds, args.concurrency, args.idle, probes)
        )
        probe_runs = total(settled_runs(port)) - total(settled_before)
        disk_growth = disk_bytes(state) - disk_before
        worst_probe = max(probe_lat) * 1000 if probe_lat else float("inf")

        # -- durability: an alert answered 200 survives a SIGKILL right after the answer -----------
        def incidents() -> int:
            with contextlib.closing(sqlite3.connect(state / "intake.sqlite3")) as db:
                return int(db.execute("SELECT count(*) FROM incidents").fetchone()[0])

        known = incidents()
        answered = asyncio.run(drive(port, [github_request(creds, 90_000, 4444)], 1))[2]
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        kept = incidents() - known
        durable = answered == {200: 1} and kept == 1

        ratio = rate / bare_rate
        lines = [
            f"intake benchmark (one uvicorn worker, HTTP parser {http_parser()}, "
            f"{args.concurrency} keep-alive connections, {os.cpu_count()} CPUs; "
            f"load average {os.getloadavg()[0]:.1f})",
            f"  bare endpoint       : {bare_rate:,.0f} requests/s, p50 {pct(bare_lat, 0.5):.2f} ms, "
            f"p99 {pct(bare_lat, 0.99):.2f} ms, server CPU {bare_cpu_us:.0f} us per request "
            f"(statuses {dict(sorted(bare_statuses.items()))})",
            f"  intake, verified    : {rate:,.0f} deliveries/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms "
            f"({ok} of {len(requests)} answered 200; statuses {dict(sorted(statuses.items()))})",
            f"  ratio               : {ratio:.2f} x the bare endpoint   (goal >= {GOAL_RATIO:g}; p99 goal <= "
            f"{GOAL_P99_MS:g} ms); {len(round_ratios)} alternating rounds: "
            f"{', '.join(f'{r:.2f}' for r in round_ratios)}",
            f"  server CPU          : {cpu_us:.0f} us per delivery; runs started during it: "
            f"{runs_throughput} (its ~60 incidents opened in warm-up)",
            *storm_lines,
            f"  flood               : {sent:,} forged deliveries in {flood_s:.1f} s "
            f"({sent / flood_s:,.0f}/s) with {args.idle} idle connections held",
            f"    valid alerts      : {len(probe_lat)} sent, statuses {probe_statuses}, answered in "
            f"{', '.join(f'{v * 1000:.1f}' for v in probe_lat)} ms; slowest "
            f"{worst_probe:.1f} ms (goal <= {GOAL_FLOOD_ALERT_MS:g}), runs started {probe_runs} "
            f"(goal {len(probes)})",
            f"    disk growth       : {disk_growth / 1024:,.0f} KiB (audit, store, log; goal < "
            f"{GOAL_FLOOD_DISK // 1024:,} KiB)",
            f"  durability          : a new alert answered {answered}, intake SIGKILLed at once -> "
            f"{kept} incident kept in its store (goal 1)",
        ]
        print("\n".join(lines))
        missed = []
        if ratio < GOAL_RATIO:
            missed.append(f"ratio {ratio:.2f} < {GOAL_RATIO:g}")
        if p99 > GOAL_P99_MS:
            missed.append(f"p99 {p99:.1f} ms > {GOAL_P99_MS:g} ms")
        if ok != len(requests):
            missed.append("not every verified delivery answered 200")
        if not storm_ok:
            missed.append("a storm did not start exactly one run")
        if (
            worst_probe > GOAL_FLOOD_ALERT_MS
            or probe_statuses != [200] * len(probes)
            or probe_runs != len(probes)
        ):
            missed.append("a valid alert under the flood was slow, refused or started no run")
        if not durable:
            missed.append("an answered alert was lost when the intake was killed")
        if disk_growth >= GOAL_FLOOD_DISK:
            missed.append(f"disk grew {disk_growth:,} bytes under the flood")
        print(f"  goals               : {'met' if not missed else 'NOT met (' + '; '.join(missed) + ')'}")
        return 0 if not missed else 1
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=10)
        bao.stop()


if __name__ == "__main__":
    sys.exit(main())
