"""Posture audit on a large business: 50 numbers, 200 templates, 30 users, 150 ms per Graph call.

    .venv/bin/python bench/posture.py [--latency-ms 150] [--runs 3]

Starts the Meta simulator (as a real HTTP server) seeded with the demo business grown to that size,
with a latency fault on every Graph call, and an OpenBao dev server holding the managed tokens, the
PIN and the app secret. Times `read_posture` + `findings` (what the `posture-audit` flow does before
publishing), and prints the figure, the Graph reads made, the findings (zero expected: the business is
clean), and `goals: met` when every run took under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from waguard.local.processes import ServedApp, free_port  # noqa: E402
from waguard.local.stack import MESSAGING_TOKEN_PATH, PIN_PATH, with_messaging_service  # noqa: E402
from waguard.meta.client import GraphClient  # noqa: E402
from waguard.meta.simulator import create_app, demo_seed  # noqa: E402
from waguard.meta.simulator.seed import BusinessUserSeed, PhoneNumberSeed, TemplateSeed  # noqa: E402
from waguard.playbook.hygiene_policy import KnownUser, load_hygiene_policy  # noqa: E402
from waguard.playbook.ports import Ports  # noqa: E402
from waguard.settings import MetaSettings, Settings, VaultSettings  # noqa: E402
from waguard.steps import posture  # noqa: E402
from waguard.vault import devserver  # noqa: E402
from waguard.vault.client import VaultClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 10.0
WABA = "3000000001"


def big_seed(app_secret: str, token: str, messaging: str, now: float):  # type: ignore[no-untyped-def]
    seed = with_messaging_service(demo_seed(app_secret=app_secret, system_user_token=token, now=now), messaging)
    numbers = [PhoneNumberSeed(id=f"41{i:08d}", waba_id=WABA, display_phone_number=f"+1 555-011-{i:04d}",
                               verified_name="Jasper's Market") for i in range(50 - len(seed.phone_numbers))]
    templates = [TemplateSeed(id=f"51{i:08d}", waba_id=WABA, name=f"notice_{i}", language="en_US",
                              created_time=int(now - (i % 48) * 3600),  # half of them "new" (last day)
                              components=[{"type": "BODY", "text": "See https://www.jaspers-market.example/o/{{1}}"}])
                 for i in range(200 - len(seed.templates))]
    users = [BusinessUserSeed(id=f"61{i:08d}", name=f"Staff {i}", email=f"s{i}@jaspers-market.example",
                              added_time=int(now - 30 * 86400)) for i in range(30 - len(seed.business_users))]
    return seed.model_copy(update={"phone_numbers": [*seed.phone_numbers, *numbers],
                                   "templates": [*seed.templates, *templates],
                                   "business_users": [*seed.business_users, *users]}), numbers, users


async def bench(latency_ms: int, runs: int) -> int:
    now = time.time()
    app_secret, token, messaging = secrets.token_hex(16), "EAAG" + secrets.token_hex(30), "EAAG" + secrets.token_hex(30)
    seed, numbers, users = big_seed(app_secret, token, messaging, now)
    base = load_hygiene_policy(ROOT / "runbooks")
    inventory = base.inventory.model_copy(update={
        "business_users": {**base.inventory.business_users,
                           **{u.id: KnownUser(name=u.name, role="EMPLOYEE") for u in users}},
        "display_names": {**base.inventory.display_names, **{n.id: n.verified_name for n in numbers}}})
    policy = base.model_copy(update={"inventory": inventory})
    with tempfile.TemporaryDirectory() as tmp:
        root = secrets.token_urlsafe(16)
        vault_port = free_port()
        bao = devserver.dev_server(port=vault_port, root_token=root, log_path=Path(tmp) / "bao.log")
        bao.start()
        sim = ServedApp(create_app(seed), name="Meta simulator").start()
        try:
            (Path(tmp) / "token").write_text(root)
            vs = VaultSettings(addr=f"http://127.0.0.1:{vault_port}", token_file=Path(tmp) / "token")
            vault = VaultClient.from_settings(vs)
            await vault.check()
            await asyncio.to_thread(devserver.bootstrap_engines, vault)
            settings = Settings(meta=MetaSettings(graph_url=sim.url), vault=vs, runbooks_dir=ROOT / "runbooks")
            for path, value in ((settings.meta.token_path, token), (MESSAGING_TOKEN_PATH, messaging),
                                (settings.meta.app_secret_path, app_secret), (PIN_PATH, "123456")):
                await vault.write_secret(path, SecretStr(value))
            async with httpx.AsyncClient(base_url=sim.url) as admin:
                (await admin.post("/_sim/faults", json={"kind": "latency", "latency_ms": latency_ms,
                                                        "seconds": 3600})).raise_for_status()
            graph = GraphClient.from_settings(settings.meta, token=SecretStr(token), app_secret=SecretStr(app_secret))
            ports = Ports(settings, vault, graph, None)  # type: ignore[arg-type]
            times, calls, found = [], 0, []
            async with httpx.AsyncClient(base_url=sim.url) as admin:
                for _ in range(runs):
                    (await admin.delete("/_sim/requests")).raise_for_status()
                    t0 = time.perf_counter()
                    reads = await posture.read_posture(ports, policy, time.time())
                    found = posture.findings(reads, policy, settings.intake.public_url, time.time())
                    times.append(time.perf_counter() - t0)
                    calls = len((await admin.get("/_sim/requests")).json()["requests"])  # every page counted
            await graph.aclose()
            vault.close()
        finally:
            sim.stop()
            bao.stop()
    worst = max(times)
    serial = calls * latency_ms / 1000
    print(f"business: {len(seed.phone_numbers)} numbers, {len(seed.templates)} templates, "
          f"{len(seed.business_users)} users; Graph latency {latency_ms} ms per call")
    print(f"posture audit: median {statistics.median(times):.2f} s, worst {worst:.2f} s over {runs} run(s); "
          f"{calls} Graph HTTP calls (one after another they would take {serial:.1f} s; ratio {serial / worst:.1f}x)")
    print(f"findings: {len(found)} {[(f.kind, f.target) for f in found][:5]}")
    ok = worst < GOAL_S and not found
    print(f"goal: under {GOAL_S:.0f} s with zero findings on the clean business")
    print("goals: met" if ok else "goals: NOT met")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=150)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(bench(args.latency_ms, args.runs)))


if __name__ == "__main__":
    main()
