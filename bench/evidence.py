"""Evidence bundle figures for a large log: bundle time, verify time, peak memory.

    .venv/bin/python bench/evidence.py [--size-mb 100] [--profile typical|dense|both]

Starts its own OpenBao dev server (the real one, as the tests do), plants 20 secrets under a prefix,
generates the log on disk by repeating a 1 MiB block (so generating it costs no memory), and writes a
bundle whose policy names that log. Each profile runs twice: once timed with RSS sampled (no
tracemalloc, which slows allocation-heavy code), once under tracemalloc for the Python heap peak.
Profiles: "typical" has one sensitive line in 25; "dense" has a secret, a phone number, an email or
a message body on every line (the worst case for the regex pass). Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import resource
import secrets
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from waguard.evidence import EvidenceSources, verify_bundle, write_bundle  # noqa: E402
from waguard.local.processes import free_port  # noqa: E402
from waguard.playbook.policy import EvidencePolicy  # noqa: E402
from waguard.playbook.timeline import IncidentRecord  # noqa: E402
from waguard.settings import EvidenceSettings, VaultSettings  # noqa: E402
from waguard.vault import devserver  # noqa: E402
from waguard.vault.client import VaultClient  # noqa: E402

MB = 1 << 20
KEY = "waguard-evidence"


def block(profile: str, secret: str) -> str:
    sensitive = [
        f"2025-05-01T10:00:01.000Z DEBUG auth header=Bearer {secret} b64={base64.b64encode(secret.encode()).decode()}",
        '{"from":"15550101234","type":"text","timestamp":"1714557600","id":"wamid.1","text":{"body":"hi there"}}',
        "2025-05-01T10:00:02.000Z INFO notify +44 20 7946 0958 and ops@acme.example",
    ]
    plain = "2025-05-01T10:00:00.000Z INFO webhook delivery=7f3a9c status=200 took=12ms path=/v23.0/106853218861309/x"
    lines = sensitive if profile == "dense" else [plain] * 72 + sensitive
    return "\n".join(lines) + "\n"


def make_log(path: Path, size_mb: int, profile: str, secret: str) -> None:
    piece = block(profile, secret)
    chunk = (piece * (MB // len(piece) + 1))[:MB]
    chunk = chunk[: chunk.rfind("\n") + 1]
    with path.open("w") as f:
        for _ in range(size_mb):
            f.write(chunk)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def one(vault: VaultClient, root: Path, prefix: str, log: Path, traced: bool) -> dict[str, float]:
    incident = IncidentRecord(root / "incidents", "INC-BENCH")
    incident.append("open", "started")
    sources = EvidenceSources(incident_id="INC-BENCH", incident=incident, graph=None, waba_id="3000000001",
                              business_id="2000000001", policy=EvidencePolicy(log_globs=[str(log)]))
    settings = EvidenceSettings(dir=root / "evidence", redaction_key_path=f"{prefix}/rk", secret_prefixes=[f"{prefix}/"])
    if traced:
        tracemalloc.start()
    rss_before = rss_mb()
    start = time.perf_counter()
    ref = await write_bundle(sources, "open", vault=vault, settings=settings, signing_key=KEY)
    took = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / MB if traced else float("nan")
    if traced:
        tracemalloc.stop()
    key = (settings.dir / f"{KEY}.pub.pem").read_bytes()
    start = time.perf_counter()
    report = verify_bundle(Path(ref.path), key, expected_sha256=ref.sha256)
    verify_s = time.perf_counter() - start
    assert report.ok, report.failure
    size = Path(ref.path).stat().st_size / MB
    Path(ref.path).unlink()
    return {"bundle_s": took, "verify_s": verify_s, "tracemalloc_peak_mb": peak, "rss_max_mb": rss_mb(),
            "rss_before_mb": rss_before, "bundle_mb": size}


async def run(size_mb: int, profiles: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="waguard-bench-") as tmp:
        root = Path(tmp)
        token = secrets.token_urlsafe(24)
        server = devserver.dev_server(port=free_port(), root_token=token, log_path=root / "openbao.log")
        server.start()
        try:
            (root / "token").write_text(token)
            vault = VaultClient.from_settings(VaultSettings(addr=server.health_url.split("/v1/")[0],
                                                            token_file=root / "token"))
            await asyncio.to_thread(devserver.bootstrap, vault, transit_key=KEY)
            prefix = "bench"
            planted = [secrets.token_urlsafe(24) for _ in range(20)]
            for i, value in enumerate(planted):
                await vault.write_secret(f"{prefix}/s{i}", SecretStr(value))
            print(f"log size {size_mb} MiB; 20 secrets in Vault; Python {sys.version.split()[0]}")
            for profile in profiles:
                log = root / f"{profile}.log"
                make_log(log, size_mb, profile, planted[3])
                timed = await one(vault, root, prefix, log, traced=False)
                traced = await one(vault, root, prefix, log, traced=True)
                print(f"[{profile}] bundle {timed['bundle_s']:.1f} s ({size_mb / timed['bundle_s']:.1f} MiB/s), "
                      f"verify {timed['verify_s']:.1f} s, bundle file {timed['bundle_mb']:.1f} MiB; "
                      f"peak Python heap (tracemalloc) {traced['tracemalloc_peak_mb']:.1f} MiB; "
                      f"process max RSS {timed['rss_max_mb']:.0f} MiB (was {timed['rss_before_mb']:.0f} MiB "
                      "before the bundle)")
                log.unlink()
            vault.close()
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--profile", choices=["typical", "dense", "both"], default="both")
    args = parser.parse_args()
    profiles = ["typical", "dense"] if args.profile == "both" else [args.profile]
    asyncio.run(run(args.size_mb, profiles))


if __name__ == "__main__":
    main()
