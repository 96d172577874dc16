"""Ports handed to test and bench servers: never from the range outgoing connections draw from.

A port from bind(0) is an ephemeral one. Between picking it and the server binding it (seconds, for a
Prefect server), any outgoing connection on the box, from this worker or another, may take it as its
local port, and the server's start then fails with EADDRINUSE: a flaky test, worse with three
pytest-xdist workers each starting stacks.
"""

from __future__ import annotations

import os
import socket

import pytest

from waguard.local import processes
from waguard.local.processes import free_port


def _ephemeral_low() -> int:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        return int(f.read().split()[0])


def test_a_free_port_is_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    ports = [free_port() for _ in range(200)]
    assert max(ports) < _ephemeral_low()
    assert len(set(ports)) == len(ports)


def test_no_port_is_handed_out_next_to_another() -> None:
    """OpenBao's dev server also listens on its port + 1 (its cluster listener): a port handed out
    next to it is taken by the time its server starts."""
    ports = set(free_port() for _ in range(200))
    assert not {p + 1 for p in ports} & ports


def test_a_port_something_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held, socket.socket() as spare:
        held.bind(("127.0.0.1", 0))
        held.listen()
        spare.bind(("127.0.0.1", 0))
        taken, free = held.getsockname()[1], spare.getsockname()[1]
        spare.close()
        monkeypatch.setattr(processes, "_next_port", (os.getpid(), iter([taken, free])))
        assert free_port() == free


@pytest.mark.parametrize("worker", ["gw0", "gw1", "gw2", "gw5"])
def test_each_xdist_worker_walks_its_own_slice(worker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    index = int(worker[2:])
    low, high = processes.port_slice(index)
    others = [processes.port_slice(i) for i in range(8) if i != index]
    assert all(high <= o_low or o_high <= low for o_low, o_high in others)
    monkeypatch.setattr(processes, "_next_port", None)  # a fresh process's walk
    assert low <= free_port() < high
