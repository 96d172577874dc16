"""The zygote: a pre-imported, single-threaded parent that forks one child process per flow run.

Started by the launcher as `python -m waguard.launcher.zygote <fd> <spec-json>`, it imports Prefect's
engine, the playbook flows and what they import later (preload.py) once, stocks TLS contexts (tls.py),
freezes the GC (so children keep sharing those pages), and then
only ever forks and reaps. It never creates a Prefect client, thread or event loop: a fork copies the
parent's memory but not its threads, and Prefect's engine deadlocks in a child forked from a process
whose threads held locks (reference A.5.4). It holds no secret: each run reads Vault after the fork.

Protocol on the socket `<fd>` (JSON lines):
    launcher -> zygote  {"op": "fork", "run_id": ..., "entrypoint": ..., "env": {...}}
    zygote -> launcher  {"op": "ready", "pid": ..., "flows": [...], "misses": {...}, "threads": n}
                        {"op": "started", "run_id": ..., "pid": ...}
                        {"op": "failed", "run_id": ..., "error": ...}
                        {"op": "exited", "run_id": ..., "pid": ..., "returncode": ...}  (-N: signal N)
The zygote reaps its children itself, so the exit status reported is the real one. If the launcher
goes away (EOF), the zygote exits; running children carry on and are reaped by the launcher, which
is their subreaper.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any


class Zygote:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.children: dict[int, str] = {}  # pid -> flow-run id
        self.buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the launcher is gone: the EOF ends the loop
            self.sock.sendall(json.dumps(message).encode() + b"\n")

    def serve(self) -> dict[str, Any] | None:
        """Fork and reap until the launcher hangs up. Returns the fork request in a child, else None."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD writes to the wakeup fd
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            while True:
                watched: list[Any] = [self.sock, wake_r]
                readable, _, _ = select.select(watched, [], [], 1.0)
                if wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                self.reap()
                if self.sock not in readable:
                    continue
                data = self.sock.recv(65536)
                if not data:
                    return None
                self.buffer += data
                while b"\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\n", 1)
                    request = json.loads(line)
                    if request.get("op") == "fork" and self.fork(request) == 0:
                        signal.set_wakeup_fd(-1)
                        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                        for fd in (wake_r, wake_w):
                            os.close(fd)
                        self.sock.close()
                        return request
        finally:
            if self.sock.fileno() >= 0:  # still the zygote (a child closed its copy above)
                signal.set_wakeup_fd(-1)

    def fork(self, request: dict[str, Any]) -> int:
        run_id = str(request["run_id"])
        try:
            pid = os.fork()
        except OSError as err:
            self.send({"op": "failed", "run_id": run_id, "error": f"fork: {err}"})
            return -1
        if pid == 0:
            return 0
        with contextlib.suppress(OSError):  # the child does the same; whichever runs first wins
            os.setpgid(pid, pid)
        self.children[pid] = run_id
        self.send({"op": "started", "run_id": run_id, "pid": pid})
        return pid

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run_id = self.children.pop(pid, None)
            if run_id is not None:
                self.send({"op": "exited", "run_id": run_id, "pid": pid,
                           "returncode": os.waitstatus_to_exitcode(status)})


def main(argv: list[str]) -> int:
    fd, spec = int(argv[0]), json.loads(argv[1])
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    started = time.perf_counter()
    from waguard.launcher.preload import preload

    flows, misses = preload(Path(spec["project"]), list(spec["entrypoints"]))
    from waguard.launcher import tls

    stocked = tls.stock()  # each run's clients take these instead of loading the CA bundle again
    gc.collect()
    gc.freeze()  # keep the imported modules' pages shared with every child (copy-on-write)
    zygote = Zygote(sock)
    zygote.send({"op": "ready", "pid": os.getpid(), "flows": sorted(flows), "misses": misses,
                 "threads": threading.active_count(), "tls_stock": stocked,
                 "import_s": round(time.perf_counter() - started, 3)})
    request = zygote.serve()
    if request is None:
        return 0
    from waguard.launcher.child import run_child  # already imported: PRELOAD

    return run_child(request, flows, Path(spec["project"]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
