"""`waguard drill` and the benches stop the stack they started when they get SIGTERM, even twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("install", [True, False], ids=["interrupt_on_sigterm", "default-handling"])
def test_sigterm_runs_the_cleanup_even_when_sent_twice(tmp_path: Path, install: bool) -> None:
    """A stand-in service (a `sleep`) is started and stopped in `finally`, as the drill does its stack.
    Without the handler (the control case) SIGTERM leaves it running."""
    pidfile, stopping = tmp_path / "service.pid", tmp_path / "stopping"
    code = textwrap.dedent(f"""
        import pathlib, subprocess, time
        from waguard.local.processes import interrupt_on_sigterm
        if {install}:
            interrupt_on_sigterm()
        service = subprocess.Popen(["sleep", "300"])
        pathlib.Path({str(pidfile)!r}).write_text(str(service.pid))
        try:
            while True:
                time.sleep(0.05)
        finally:
            pathlib.Path({str(stopping)!r}).write_text("")
            time.sleep(0.5)  # a stop that takes a while: the second SIGTERM lands in it
            service.terminate()
            service.wait()
    """)
    driver = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(600):
            if pidfile.exists() and pidfile.read_text():
                break
            time.sleep(0.05)
        service = int(pidfile.read_text())
        driver.send_signal(signal.SIGTERM)
        for _ in range(200):
            if stopping.exists() or driver.poll() is not None:
                break
            time.sleep(0.01)
        if driver.poll() is None:
            driver.send_signal(signal.SIGTERM)  # e.g. `timeout` forwarding its own
        driver.wait(30)
        assert _alive(service) is (not install)
    finally:
        driver.kill()
        if pidfile.exists() and pidfile.read_text() and _alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
