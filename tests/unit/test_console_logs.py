"""`waguard up` and `waguard drill` print progress, not log lines (issue 12 item 7): what the stack's
process logs (our INFO lines, uvicorn's traceback of a failing request, Python warnings, Prefect's
console handler) goes to the log file. Checked in a process of its own, as the command runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.console import log_lines

SCRIPT = r"""
import logging, sys, warnings
import httpx
from starlette.applications import Starlette
from starlette.routing import Route
from waguard.local.console import logs_to_file
from waguard.local.processes import ServedApp

logs_to_file(__import__("pathlib").Path(sys.argv[1]))
print("starting the simulators", flush=True)

async def boom(request):
    raise RuntimeError("the simulator failed a request")

with ServedApp(Starlette(routes=[Route("/", boom)]), name="sim") as served:
    assert httpx.get(served.url).status_code == 500
logging.getLogger("waguard.vault.client").info("vault wrote secret meta/app-secret version 1")
logging.getLogger("prefect.flow_runs").warning("a flow run line")
logging.getLogger("prefect").error("a prefect line")
warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
print("stack is up", flush=True)
"""


def test_the_console_shows_progress_and_the_file_holds_the_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "waguard-up.log"
    done = subprocess.run([sys.executable, "-W", "default", "-c", SCRIPT, str(log)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    console = done.stdout + done.stderr
    assert console.split() == ["starting", "the", "simulators", "stack", "is", "up"], console
    text = log.read_text()
    for expected in ("vault wrote secret", "Exception in ASGI application", "RuntimeError: the simulator failed",
                     "a flow run line", "a prefect line", "DeprecationWarning: a library's deprecation"):
        assert expected in text, expected


def test_the_checker_knows_a_log_line_from_progress() -> None:
    logs = ["2026-11-29 19:28:30,194 INFO waguard.vault.client: vault wrote secret meta/app-secret version 1",
            "19:28:30.194 | INFO    | Flow run 'x' - Beginning flow run",
            "ERROR:    Exception in ASGI application",
            "Traceback (most recent call last):",
            "/x/y.py:3: DeprecationWarning: old"]
    progress = ["starting OpenBao dev server on http://127.0.0.1:8200", "  bm-takeover: contained in 12.3 s",
                "| bm-takeover | account-takeover | 12.3 |"]
    assert log_lines("\n".join(logs + progress)) == logs
