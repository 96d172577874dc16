"""Faults on the scaled profile (issue 17, item 4), each under a storm of real playbook runs.

    .venv/bin/python bench/scale_faults.py [--incidents 8] [--fault NAME ...]

Starts `waguard up --profile scaled` on free ports (PostgreSQL, Redis, two Prefect API replicas and a
services process behind HAProxy, two intakes, two launchers), then for each fault: N template-abuse
incidents from signed Alertmanager alerts through HAProxy, the stand-in responder approving in Slack,
the fault applied mid-storm (waguard.drills.scale_faults). Prints per fault the time until every
affected incident is contained again and the destructive calls repeated. Goal (per fault): every
incident contained or failed safe, no destructive call repeated, the time printed. Ends with
`goals: met` (exit 0) or `goals: NOT met (...)`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.stack import stack_env  # noqa: E402  (one definition of the stack's test settings)


def main() -> int:
    from waguard.drills.scale_faults import FAULTS, Storm
    from waguard.local.scaled import ScaledStack
    from waguard.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=8)
    parser.add_argument("--fault", action="append", choices=FAULTS)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="waguard-scale-faults-"))
    home.chmod(0o711)  # PostgreSQL runs as user postgres and must reach its data directory
    for k in [k for k in os.environ if k.startswith(("WAGUARD_", "PREFECT_"))]:
        del os.environ[k]
    os.environ.update(stack_env(home))
    os.chdir(ROOT)
    stack = ScaledStack(load_settings(), say=lambda _m: None)
    missed: list[str] = []
    try:
        stack.start()
        print(f"scaled profile up in {stack.started_s['total']:.1f} s; {args.incidents} incidents per fault")
        storm = Storm(stack, say=print)
        try:
            for fault in args.fault or FAULTS:
                result = asyncio.run(storm.run(fault, args.incidents))
                print(f"  {result.line()}")
                for note in result.notes:
                    print(f"    {note}")
                for line in result.unresolved[:5]:
                    print(f"    unresolved: {line}")
                for call in result.repeated[:5]:
                    print(f"    repeated: {call}")
                if not result.met:
                    missed.append(fault)
        finally:
            storm.close()
    finally:
        stack.stop()
    if missed:
        print(f"goals: NOT met ({', '.join(missed)}: not every incident contained or failed safe, "
              "a destructive call repeated, or no time to contained-again)")
        return 1
    shutil.rmtree(home, ignore_errors=True)
    print("goals: met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
