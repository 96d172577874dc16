"""The zygote's stock of TLS contexts: each handed out once, only for the very same arguments and CA file.

Run in a subprocess: `stock` replaces `ssl.create_default_context` for the rest of the process, as
it does in the zygote and its forked runs, and must not leak into the test session.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import certifi

SCRIPT = textwrap.dedent("""
    import os, shutil, ssl, sys, time
    from waguard.launcher import tls

    ca = sys.argv[1]
    shutil.copy(sys.argv[2], ca)
    assert tls.stock(3, calls=[(ca, None)]) == 3 and tls.left() == 3
    stocked = list(tls._stock.values())[0][:]

    first = ssl.create_default_context(cafile=ca)
    second = ssl.create_default_context(cafile=ca)
    assert first is not second and first in stocked and second in stocked  # from the stock, once each
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname  # as a new default context
    assert len(first.get_ca_certs()) > 100  # the CA file's certificates are in it

    second.check_hostname = False  # what Prefect's insecure mode does to its context
    second.verify_mode = ssl.CERT_NONE
    third = ssl.create_default_context(cafile=ca)
    assert third.check_hostname and third.verify_mode == ssl.CERT_REQUIRED  # not shared: unaffected

    # Out of stock: a new context, as before.
    assert tls.left() == 0
    fresh = ssl.create_default_context(cafile=ca)
    assert fresh not in stocked and fresh.verify_mode == ssl.CERT_REQUIRED

    # Other arguments, or a CA file changed since the stock was made: made anew, the stock untouched.
    tls.stock(1, calls=[(ca, None)])
    other = ssl.create_default_context(cafile=sys.argv[2])
    assert other not in tls._stock[next(iter(tls._stock))] and tls.left() == 1
    with open(ca, "a") as f:
        f.write("\\n")
    changed = ssl.create_default_context(cafile=ca)
    assert len(changed.get_ca_certs()) > 100 and tls.left() == 1
    print("ok")
""")


def test_stocked_contexts_are_fresh_unshared_and_only_for_the_same_ca_file(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "ca.pem"), certifi.where()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_the_stock_matches_what_prefect_and_httpx_ask_for() -> None:
    """The calls stocked are the calls Prefect's client and httpx make in this environment."""
    script = textwrap.dedent("""
        import ssl, httpx
        from prefect.client.orchestration import PrefectClient
        from waguard.launcher import tls

        stocked = tls.stock(3)
        before = tls.left()
        PrefectClient("http://127.0.0.1:1/api")
        httpx.AsyncClient()
        httpx.Client()
        print(stocked, before - tls.left())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    stocked, taken = map(int, done.stdout.split())
    assert stocked >= 3 and taken == 3
