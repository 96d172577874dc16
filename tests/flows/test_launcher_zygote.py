"""The zygote follows the code: a change starts a new one in the background, before a run needs it.

A real zygote process (it imports Prefect and the flow), no Prefect server: nothing here talks to one.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from waguard.launcher.forks import ZygoteProcess

pytestmark = pytest.mark.slow
FLOW = "from prefect import flow\n\n\n@flow\ndef hello() -> int:\n    return {n}\n"


async def test_a_code_change_starts_a_new_zygote_without_waiting_for_a_run(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hello.py").write_text(FLOW.format(n=1))
    zygote = ZygoteProcess(tmp_path, ["flows/hello.py:hello"], watch=[flows])
    first = await zygote.start()
    assert first["flows"] == ["flows/hello.py:hello"] and first["tls_stock"] > 0
    old = zygote._gen.proc  # type: ignore[union-attr]
    watcher = asyncio.create_task(zygote.keep_current(interval_s=0.1, settle_s=0.3))
    try:
        while zygote.code_checks < 5:  # several looks at unchanged code, longer than settle_s
            await asyncio.sleep(0.05)
        assert zygote.info["pid"] == first["pid"]  # nothing changed: the same zygote
        (flows / "hello.py").write_text(FLOW.format(n=2))
        later = time.time() + 5  # a new mtime even on a coarse clock
        os.utime(flows / "hello.py", (later, later))
        deadline = time.monotonic() + 180
        while zygote.info["pid"] == first["pid"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert zygote.info["pid"] != first["pid"] and zygote.alive  # started with no fork asked for
        assert zygote.info["flows"] == ["flows/hello.py:hello"]
        assert await asyncio.to_thread(old.wait, 60) == 0  # the old one hung up and exited
    finally:
        watcher.cancel()
        zygote.stop()
