"""Pickup without waiting for a poll: "run X was just created", as one datagram on a local socket.

The sender (the intake, a drill) never waits and never fails on it: no launcher listening is the
normal fallback case, and the launcher's own poll picks the run up a little later. The message is
only a hint: the launcher reads the run from Prefect and claims it through Pending, so a forged or
repeated id can at most make it look at a run that is already waiting to execute.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

MAX_DATAGRAM = 64  # a UUID and a newline


def socket_path(launcher_dir: Path) -> Path:
    return launcher_dir / "notify.sock"


def notify_launcher(launcher_dir: Path, flow_run_id: str | UUID) -> bool:
    """Tell a launcher on this machine about a new run. Returns True if a launcher took the datagram."""
    path = socket_path(launcher_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.sendto(str(flow_run_id).encode(), str(path))
        return True
    except OSError:  # no launcher, a stale socket, a full queue: the poll will find the run
        return False


class NotifySocket:
    """The launcher's end: a bound datagram socket whose messages call `on_run(flow_run_id)`."""

    def __init__(self, launcher_dir: Path, on_run: Callable[[UUID], None]) -> None:
        self.path = socket_path(launcher_dir)
        self.on_run = on_run
        self.sock: socket.socket | None = None

    def open(self) -> NotifySocket:
        import asyncio

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if len(str(self.path).encode()) > 107:
            raise ValueError(f"launcher socket path too long for AF_UNIX (max 107 bytes): {self.path}")
        self.path.unlink(missing_ok=True)  # a socket left by a launcher that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        self.path.chmod(0o600)  # only this user may send
        sock.setblocking(False)
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        return self

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            with contextlib.suppress(ValueError):
                self.on_run(UUID(data.decode("ascii", "replace").strip()))

    def close(self) -> None:
        import asyncio

        if self.sock is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        self.sock = None
        self.path.unlink(missing_ok=True)
