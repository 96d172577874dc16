"""TLS contexts made before the fork: a run process takes a ready one instead of loading the CA bundle.

Every Prefect and httpx client builds an `ssl.SSLContext` and loads the CA bundle into it, even for
http:// URLs: about 140 certificates, 20-150 ms of CPU each time on a busy 2-core machine, and a
playbook run builds about 17 of them (engine, log and event workers, observers, the lease renewer,
Vault, Graph and Slack clients). Measured in forked playbook runs: 0.74-0.93 s per run (summed, on a
loaded machine), most of it before the playbook's first step.

The zygote makes a stock of contexts before it forks (`stock`). In a run process,
`ssl.create_default_context` then hands out a stocked context made with exactly the same arguments
and the same CA file (path, size, mtime), each context once: it is never shared, so a caller may
change it (Prefect's insecure mode does, httpcore sets ALPN on it) exactly as a new one. When the
stock runs out, or the arguments or the CA file differ, a new context is made as before. A stocked
context never made a connection and holds no secret: only the public CA certificates.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

STOCK = 24  # a playbook run makes ~17; more would only cost the zygote's start time and memory (~1 MB each)
_make_context = ssl.create_default_context
_stock: dict[tuple[Any, ...], list[ssl.SSLContext]] = {}


def _file_id(path: str | None) -> tuple[Any, ...]:
    if not path:
        return ()
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)
    return (path, st.st_ino, st.st_size, st.st_mtime_ns)


def _key(purpose: ssl.Purpose, cafile: Any, capath: Any) -> tuple[Any, ...]:
    """What the context holds depends on (without cafile or capath: the CA file the environment names)."""
    if cafile is None and capath is None:
        env_file = os.environ.get("SSL_CERT_FILE") or ssl.get_default_verify_paths().openssl_cafile
        return (purpose, None, None, os.environ.get("SSL_CERT_DIR"), _file_id(env_file))
    return (purpose, cafile, capath, None, _file_id(cafile if isinstance(cafile, str) else None))


def create_default_context(purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH, *, cafile: Any = None,
                           capath: Any = None, cadata: Any = None) -> ssl.SSLContext:
    """`ssl.create_default_context`, served from the stock when one was made with the same arguments."""
    if cadata is None and not isinstance(cafile, bytes) and not isinstance(capath, bytes):
        ready = _stock.get(_key(purpose, cafile, capath))
        if ready:
            try:
                return ready.pop()
            except IndexError:  # another thread took the last one
                pass
    return _make_context(purpose, cafile=cafile, capath=capath, cadata=cadata)


def expected_calls() -> list[tuple[str | None, str | None]]:
    """(cafile, capath) the run's clients will ask for: Prefect's client (its settings) and httpx's (env)."""
    import certifi
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY

    prefect = (None, None) if PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value() else (
        PREFECT_API_SSL_CERT_FILE.value() or certifi.where(), None)
    if os.environ.get("SSL_CERT_FILE"):  # httpx.create_ssl_context's order
        httpx: tuple[str | None, str | None] = (os.environ["SSL_CERT_FILE"], None)
    elif os.environ.get("SSL_CERT_DIR"):
        httpx = (None, os.environ["SSL_CERT_DIR"])
    else:
        httpx = (certifi.where(), None)
    return list(dict.fromkeys([prefect, httpx]))


def stock(count: int = STOCK, calls: list[tuple[str | None, str | None]] | None = None) -> int:
    """Make `count` contexts for each expected call and serve them from `ssl.create_default_context`.

    Call it in the zygote, before forking; returns how many contexts were made.
    """
    made = 0
    for cafile, capath in expected_calls() if calls is None else calls:
        ready = _stock.setdefault(_key(ssl.Purpose.SERVER_AUTH, cafile, capath), [])
        while len(ready) < count:
            ready.append(_make_context(ssl.Purpose.SERVER_AUTH, cafile=cafile, capath=capath))
            made += 1
    ssl.create_default_context = create_default_context
    return made


def left() -> int:
    """Contexts still in stock in this process (the run's count at its end says whether STOCK suffices)."""
    return sum(len(ready) for ready in _stock.values())
