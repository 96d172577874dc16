"""A detection drill starts its anomaly only once no earlier alert of the same kind is active in the
real Prometheus: run again inside a rule's window, the new anomaly would only keep the old alert going
and nothing new would reach the intake (seen running `template-spike` twice within 15 minutes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from tests.support.detection import tool
from waguard.drills.behaviour import quiet
from waguard.local.processes import ChildProcess, free_port

pytestmark = pytest.mark.slow


async def test_quiet_waits_out_an_active_alert_and_passes_when_there_is_none(tmp_path: Path) -> None:
    prometheus = tool("prometheus", "prometheus")
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"alert": "AlwaysOn", "expr": "vector(1)", "for": "0s"}]}]}))
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"evaluation_interval": "1s", "scrape_interval": "1s"},
                                      "rule_files": [str(rules)]}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = ChildProcess("Prometheus", [prometheus, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                                        f"--storage.tsdb.path={tmp_path / 'data'}"],
                         f"{url}/-/ready", tmp_path / "prometheus.log").start()
    try:
        assert await quiet(url, "NotARule", timeout_s=5) < 1  # nothing of that kind: start at once
        # One that stays active is waited for, up to the drill's timeout, then named.
        for _ in range(50):  # the rule group's first evaluation
            try:
                await quiet(url, "AlwaysOn", timeout_s=0, poll_s=0.1)
            except TimeoutError:
                break
            await asyncio.sleep(0.1)
        with pytest.raises(TimeoutError, match="AlwaysOn from an earlier anomaly still active"):
            await quiet(url, "AlwaysOn", timeout_s=1, poll_s=0.2)
    finally:
        child.stop()
