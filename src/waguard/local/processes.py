"""Running servers on loopback: ASGI apps in a background thread, and child processes.

Both the local stack (`waguard up`) and the tests use these, so the simulators the tests talk to are
real HTTP servers on real ports, exactly as in drills.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

from waguard.errors import WaguardError


class PortInUse(WaguardError):
    """A port the stack needs is taken by another process."""

    def __init__(self, service: str, host: str, port: int) -> None:
        super().__init__(
            f"port {port} on {host} is already in use, so {service} cannot start there; "
            f"stop whatever holds it (e.g. `ss -ltnp 'sport = :{port}'`) or choose another port "
            f"(WAGUARD_STACK__*_PORT)"
        )
        self.service, self.host, self.port = service, host, port


class StackError(WaguardError):
    """The local stack could not start."""


class ServiceDidNotStart(WaguardError):
    """A service did not answer its health check in time."""


# Ports for tests, benches and the scaled profile (the stack's own are fixed, all below this).
PORTS_FROM = 20_000
XDIST_SLICES = 8
_next_port: tuple[int, Iterator[int]] | None = None  # (pid, walk): a forked child starts its own


@functools.cache  # the kernel's setting, read once per process
def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def port_slice(worker: int | None) -> tuple[int, int]:
    """The ports [low, high) handed out under pytest-xdist worker `worker` (None: all of them)."""
    top = _ephemeral_low()
    if worker is None:
        return PORTS_FROM, top
    size = (top - PORTS_FROM) // XDIST_SLICES
    low = PORTS_FROM + (worker % XDIST_SLICES) * size
    return low, low + size


def _walk() -> Iterator[int]:
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    low, high = port_slice(int(name[2:]) if name[:2] == "gw" and name[2:].isdigit() else None)
    # Even ports only: a server's companion on its port + 1 (OpenBao's cluster listener) never lands
    # on a port handed to another server. In an order of this process's own (its pid), so a worker's
    # child processes do not hand out what the worker does.
    ports = list(range(low + low % 2, high, 2))
    random.Random(os.getpid()).shuffle(ports)
    return itertools.cycle(ports)


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tests, benches and the scaled profile).

    Not bind(0)'s: that is an ephemeral port, and any outgoing connection on the box may take it as
    its local port before the server binds it (seconds, for a Prefect server), which then fails to
    start. These come from below the ephemeral range instead, each pytest-xdist worker from a slice
    of its own; a process hands out every even port of its slice once before it hands one out again.
    """
    global _next_port
    top = _ephemeral_low()
    if top - PORTS_FROM < 4 * XDIST_SLICES:  # an unusual range: leave it to the kernel
        with socket.socket() as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    if _next_port is None or _next_port[0] != os.getpid():
        _next_port = (os.getpid(), _walk())
    walk = _next_port[1]
    for _ in range(top - PORTS_FROM):
        port = next(walk)
        if _bindable(host, port):
            return port
    raise StackError(f"no free port on {host} from {PORTS_FROM} to {top}")


def ensure_port_free(service: str, host: str, port: int) -> None:
    """Raise PortInUse, naming the port and the service, if something already listens there."""
    if not _bindable(host, port):
        raise PortInUse(service, host, port)


def wait_until_ok(url: str, timeout_s: float = 30.0, *, service: str = "service",
                  alive: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers 2xx, or raise ServiceDidNotStart."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise ServiceDidNotStart(f"{service} exited with status {alive.returncode} before it was ready")
        try:
            r = httpx.get(url, timeout=2.0)
            if r.is_success:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = type(e).__name__
        time.sleep(0.1)
    raise ServiceDidNotStart(f"{service} did not become ready at {url} within {timeout_s:.0f}s ({last})")


def wait_until(ready: Callable[[], bool], timeout_s: float, *, service: str,
               alive: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `ready()` until it returns True, or raise ServiceDidNotStart."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise ServiceDidNotStart(f"{service} exited with status {alive.returncode} before it was ready")
        if ready():
            return
        time.sleep(0.1)
    raise ServiceDidNotStart(f"{service} did not become ready within {timeout_s:.0f}s")


@dataclass
class ServedApp:
    """An ASGI app served by uvicorn in a daemon thread. Use as a context manager."""

    app: ASGIApp
    host: str = "127.0.0.1"
    port: int = 0
    name: str = "app"
    health_path: str | None = None
    _server: uvicorn.Server | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServedApp:
        if self.port == 0:
            self.port = free_port(self.host)
        else:
            ensure_port_free(self.name, self.host, self.port)
        # log_config=None: uvicorn's records (an ASGI traceback when a client disconnects) go where the
        # process sends its logs (a file under `waguard up`), not to a stderr handler of uvicorn's own.
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning",
                                access_log=False, lifespan="auto", log_config=None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServiceDidNotStart(f"{self.name} did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ServedApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ChildProcess:
    """A child process with a health URL; its output goes to a log file, never to our console."""

    name: str
    argv: Sequence[str]
    health_url: str
    log_path: Path
    env: Mapping[str, str] | None = None
    ready_timeout_s: float = 60.0
    proc: subprocess.Popen[bytes] | None = None
    # A server that speaks no HTTP (PostgreSQL, Redis): ready once this returns True; health_url unused.
    probe: Callable[[], bool] | None = None
    stop_signal: int = signal.SIGTERM  # PostgreSQL: SIGINT, its fast shutdown (SIGTERM waits for clients)

    def start(self) -> ChildProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(list(self.argv), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            if self.probe is not None:
                wait_until(self.probe, self.ready_timeout_s, service=self.name, alive=self.proc)
            else:
                wait_until_ok(self.health_url, self.ready_timeout_s, service=self.name, alive=self.proc)
        except ServiceDidNotStart:
            self.stop()
            where = "" if self.probe is not None else f" at {self.health_url}"
            raise ServiceDidNotStart(
                f"{self.name} did not become ready{where}; see {self.log_path}"
            ) from None
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, self.stop_signal)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


@contextlib.contextmanager
def running(*services: ServedApp | ChildProcess) -> Iterator[None]:
    """Start services in order and stop them in reverse order, whatever happens."""
    started: list[ServedApp | ChildProcess] = []
    try:
        for s in services:
            s.start()
            started.append(s)
        yield
    finally:
        for s in reversed(started):
            s.stop()


def interrupt_on_sigterm() -> None:
    """The first SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so the caller's `finally` stops the
    stack it started; later ones are ignored, so a second signal (a supervisor's, `timeout`'s) cannot
    cut that stop short. By default SIGTERM ended the process at once and left every service running."""

    def first(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, first)
