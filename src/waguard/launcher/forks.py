"""The launcher's side of the zygote: start it, ask it to fork, learn each child's exit status.

The launcher is the children's subreaper (prctl PR_SET_CHILD_SUBREAPER): if the zygote dies, its
running children re-parent to the launcher, which then reaps them itself. Either way the launcher
knows a child's real exit status, and never mistakes a child that is still running for a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("waguard.launcher")
PR_SET_CHILD_SUBREAPER = 36
ORPHAN_POLL_S = 0.2


class ZygoteUnavailable(RuntimeError):
    """The zygote could not start, or died before it forked the run."""


def become_subreaper() -> bool:
    """Orphaned run processes re-parent to this process (Linux), so their exit status reaches us."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class ChildRun:
    """One run's process, as Prefect's ProcessHandle sees it: `.pid` and `.returncode`."""

    run_id: str
    pid: int
    returncode: int | None = None
    orphaned: bool = False  # its zygote died: reap it ourselves
    _exited: asyncio.Event = field(default_factory=asyncio.Event)

    def exited(self, returncode: int) -> None:
        if self.returncode is None:
            self.returncode = returncode
        self._exited.set()

    async def wait(self) -> int:
        while not self._exited.is_set():
            if self.orphaned:
                self._reap_orphan()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exited.wait(), ORPHAN_POLL_S if self.orphaned else 1.0)
        assert self.returncode is not None
        return self.returncode

    def _reap_orphan(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # not (yet) re-parented to us
            if not _alive(self.pid):
                log.error("run %s: process %s is gone and its exit status was lost", self.run_id, self.pid)
                self.exited(255)
            return
        if pid:
            self.exited(os.waitstatus_to_exitcode(status))


@dataclass
class ZygoteProcess:
    """A running zygote: `fork()` runs, learn exits. Restarted on demand if it dies."""

    project: Path
    entrypoints: list[str]
    # The launcher's own client checks the server's API version; each run skipping it saves round trips.
    env: dict[str, str] = field(default_factory=lambda: {"PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED": "false"})
    ready_timeout_s: float = 180.0
    info: dict[str, Any] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = None
    _writer: asyncio.StreamWriter | None = None
    _reader_task: asyncio.Task[None] | None = None
    _forks: dict[str, asyncio.Future[int]] = field(default_factory=dict)
    _children: dict[int, ChildRun] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._writer is not None

    async def start(self) -> dict[str, Any]:
        """Start the zygote and wait until it has imported everything; returns its ready message."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        spec = json.dumps({"project": str(self.project), "entrypoints": self.entrypoints})
        self._proc = subprocess.Popen([sys.executable, "-m", "waguard.launcher.zygote", str(theirs.fileno()), spec],
                                      pass_fds=[theirs.fileno()], env={**os.environ, **self.env},
                                      stdin=subprocess.DEVNULL)
        theirs.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 20)
        try:
            line = await asyncio.wait_for(reader.readline(), self.ready_timeout_s)
        except TimeoutError:
            line = b""
        message = json.loads(line) if line else {}
        if message.get("op") != "ready":
            self.stop()
            raise ZygoteUnavailable(f"the zygote did not start (exit status {self._proc.poll()})")
        self.info = message
        if message.get("misses"):
            log.warning("zygote could not preload %s; those runs import their flow themselves", message["misses"])
        if message.get("threads", 1) != 1:
            log.warning("zygote has %s threads before forking; forked runs may deadlock", message["threads"])
        self._reader_task = asyncio.create_task(self._read(reader))
        return message

    async def fork(self, run_id: str, entrypoint: str, env: dict[str, str]) -> ChildRun:
        async with self._lock:
            if not self.alive:
                log.warning("zygote not running; starting a new one")
                await self.start()
        assert self._writer is not None
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._forks[run_id] = future
        request = {"op": "fork", "run_id": run_id, "entrypoint": entrypoint, "env": env}
        self._writer.write(json.dumps(request).encode() + b"\n")
        await self._writer.drain()
        try:
            pid = await asyncio.wait_for(future, 30)
        finally:
            self._forks.pop(run_id, None)
        child = self._children.setdefault(pid, ChildRun(run_id, pid))
        return child

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            message = json.loads(line)
            op, run_id = message.get("op"), str(message.get("run_id"))
            if op == "started" and run_id in self._forks:
                self._children.setdefault(message["pid"], ChildRun(run_id, message["pid"]))
                self._forks[run_id].set_result(message["pid"])
            elif op == "failed" and run_id in self._forks:
                self._forks[run_id].set_exception(ZygoteUnavailable(message.get("error", "fork failed")))
            elif op == "exited":
                child = self._children.pop(message["pid"], None)
                if child is not None:
                    child.exited(int(message["returncode"]))
        # EOF: the zygote died. Its children live on, re-parented to us (the subreaper).
        log.error("zygote exited (status %s); %d run(s) re-parented to the launcher",
                  self._proc.poll() if self._proc else None, len(self._children))
        self._writer = None
        for child in list(self._children.values()):
            child.orphaned = True
        self._children.clear()
        for future in self._forks.values():
            if not future.done():
                future.set_exception(ZygoteUnavailable("the zygote died before forking the run"))

    def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        if self._reader_task is not None:
            self._reader_task.cancel()
