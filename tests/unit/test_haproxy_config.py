"""The scaled profile's HAProxy config (waguard.local.haproxy) is valid for Debian's haproxy, and its checks
give a replica under load time to answer before both are marked DOWN together."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from waguard.local.haproxy import Backend, haproxy_config

BACKENDS = [Backend("prefect", "127.0.0.1:4200", ["127.0.0.1:4201", "127.0.0.1:4202"], "/api/ready"),
            Backend("intake", "127.0.0.1:8730", ["127.0.0.1:8731", "127.0.0.1:8732"], "/livez")]


def test_the_config_is_valid(tmp_path: Path) -> None:
    binary = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if binary is None:
        pytest.skip("haproxy not installed (scripts/sysdeps.sh installs it)")
    (tmp_path / "haproxy.cfg").write_text(haproxy_config(BACKENDS))
    checked = subprocess.run([binary, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_checks_wait_longer_than_a_busy_replica_takes() -> None:
    config = haproxy_config(BACKENDS)
    assert config.count("timeout check 5s") == 2 and config.count("fall 3") == 2
