"""The pickup datagram: a run id, optionally followed by its deployment's id (waguard.launcher.pickup)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from waguard.launcher.pickup import MAX_DATAGRAM, parse_hint


def test_a_run_id_alone_and_a_run_id_with_its_deployment_both_parse() -> None:
    run, deployment = uuid4(), uuid4()
    assert parse_hint(f"{run}\n".encode()) == (run, None)
    assert parse_hint(f"{run} {deployment}".encode()) == (run, deployment)
    assert len(f"{run} {deployment}\n".encode()) <= MAX_DATAGRAM


@pytest.mark.parametrize("data", [b"", b"not-a-uuid", f"{uuid4()} {uuid4()} {uuid4()}".encode(),
                                  f"{uuid4()} nope".encode(), b"\xff\xfe"])
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_hint(data)
