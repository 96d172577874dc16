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


def code_fingerprint(roots: list[Path]) -> int:
    """Newest modification time of the Python files under `roots` (what a zygote has preloaded)."""
    newest = 0
    for root in roots:
        for path in root.rglob("*.py"):
            with contextlib.suppress(OSError):
                newest = max(newest, path.stat().st_mtime_ns)
    return newest


@dataclass
class _Generation:
    """One zygote process and what it owes the launcher: pending forks, and exits of its children."""

    proc: subprocess.Popen[bytes]
    writer: asyncio.StreamWriter | None
    fingerprint: int
    forks: dict[str, asyncio.Future[int]] = field(default_factory=dict)
    children: dict[int, ChildRun] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.writer is not None and self.proc.poll() is None


@dataclass
class ZygoteProcess:
    """A running zygote: `fork()` runs, learn exits. Started again if it dies or the code changed.

    Preloaded code is frozen when the zygote starts (reference A.5.7): when a file under `watch`
    changes, the next fork starts a new zygote first (the old one exits; its running children carry
    on, re-parented to the launcher), so no run mixes old modules in memory with new ones on disk.
    """

    project: Path
    entrypoints: list[str]
    watch: list[Path] = field(default_factory=list)
    # The launcher's own client checks the server's API version; each run skipping it saves round trips.
    env: dict[str, str] = field(
        default_factory=lambda: {"PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED": "false"}
    )
    ready_timeout_s: float = 180.0
    info: dict[str, Any] = field(default_factory=dict)
    code_checks: int = 0  # times keep_current compared the code on disk with the zygote's (tests wait on it)
    _gen: _Generation | None = None
    _readers: set[asyncio.Task[None]] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def alive(self) -> bool:
        return self._gen is not None and self._gen.alive

    async def start(self) -> dict[str, Any]:
        """Start the zygote and wait until it has imported everything; returns its ready message."""
        fingerprint = code_fingerprint(self.watch)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        spec = json.dumps({"project": str(self.project), "entrypoints": self.entrypoints})
        proc = subprocess.Popen(
            [sys.executable, "-m", "waguard.launcher.zygote", str(theirs.fileno()), spec],
            pass_fds=[theirs.fileno()],
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 20)
        try:
            line = await asyncio.wait_for(reader.readline(), self.ready_timeout_s)
        except TimeoutError:
            line = b""
        message = json.loads(line) if line else {}
        if message.get("op") != "ready":
            writer.close()
            proc.terminate()
            raise ZygoteUnavailable(f"the zygote did not start (exit status {proc.poll()})")
        self.info = message
        if message.get("misses"):
            log.warning(
                "zygote could not preload %s; those runs import their flow themselves", message["misses"]
            )
        if message.get("threads", 1) != 1:
            log.warning("zygote has %s threads before forking; forked runs may deadlock", message["threads"])
        self._gen = _Generation(proc, writer, fingerprint)
        task = asyncio.create_task(self._read(reader, self._gen))
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)
        return message

    async def keep_current(self, interval_s: float = 2.0, settle_s: float = 5.0) -> None:
        """Start a new zygote soon after the code changed, not when the next run needs one.

        A run that finds the code changed waits for a whole zygote start (its imports: 6-12 s under
        load); started here, the new zygote is usually ready before a run arrives. A change counts
        once the files have been still for `settle_s`, so a deploy in progress restarts it once.
        """
        seen, since = None, 0.0
        while True:
            await asyncio.sleep(interval_s)
            gen = self._gen
            if not self.watch or gen is None or not gen.alive:
                continue
            now = code_fingerprint(self.watch)
            self.code_checks += 1
            if now == gen.fingerprint:
                seen = None
                continue
            if now != seen:
                seen, since = now, asyncio.get_running_loop().time()
                continue
            if asyncio.get_running_loop().time() - since < settle_s:
                continue
            async with self._lock:
                if self._gen is gen and gen.alive:
                    log.warning("code changed since zygote %s started: starting a new one", gen.proc.pid)
                    self._retire(gen)
                    try:
                        await self.start()
                    except ZygoteUnavailable as err:  # the next fork tries again
                        log.error("%s", err)

    async def fork(self, run_id: str, entrypoint: str, env: dict[str, str]) -> ChildRun:
        async with self._lock:
            if self._gen is not None and self._gen.alive and self.watch and \
                    code_fingerprint(self.watch) != self._gen.fingerprint:
                log.warning("code changed since zygote %s started: starting a new one", self._gen.proc.pid)
                self._retire(self._gen)
            if not self.alive:
                await self.start()
            gen = self._gen
            assert gen is not None and gen.writer is not None
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            gen.forks[run_id] = future
            request = {"op": "fork", "run_id": run_id, "entrypoint": entrypoint, "env": env}
            gen.writer.write(json.dumps(request).encode() + b"\n")
            await gen.writer.drain()
        try:
            pid = await asyncio.wait_for(future, 30)
        finally:
            gen.forks.pop(run_id, None)
        return gen.children.setdefault(pid, ChildRun(run_id, pid))

    async def _read(self, reader: asyncio.StreamReader, gen: _Generation) -> None:
        while line := await reader.readline():
            message = json.loads(line)
            op, run_id = message.get("op"), str(message.get("run_id"))
            if op == "started" and run_id in gen.forks:
                gen.children.setdefault(message["pid"], ChildRun(run_id, message["pid"]))
                gen.forks[run_id].set_result(message["pid"])
            elif op == "failed" and run_id in gen.forks:
                gen.forks[run_id].set_exception(ZygoteUnavailable(message.get("error", "fork failed")))
            elif op == "exited":
                child = gen.children.pop(message["pid"], None)
                if child is not None:
                    child.exited(int(message["returncode"]))
        # EOF: the zygote exited. Its children live on, re-parented to us (the subreaper).
        if gen.children:
            log.warning("zygote %s exited (status %s); %d run(s) re-parented to the launcher",
                        gen.proc.pid, gen.proc.poll(), len(gen.children))
        gen.writer = None
        for child in gen.children.values():
            child.orphaned = True
        gen.children.clear()
        for future in gen.forks.values():
            if not future.done():
                future.set_exception(ZygoteUnavailable("the zygote died before forking the run"))

    @staticmethod
    def _retire(gen: _Generation) -> None:
        """Hang up on a zygote: it exits on EOF; the reader then hands its live children to us."""
        if gen.writer is not None:
            gen.writer.close()
            gen.writer = None

    def stop(self) -> None:
        if self._gen is None:
            return
        self._retire(self._gen)
        if self._gen.proc.poll() is None:
            self._gen.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._gen.proc.wait(5)
