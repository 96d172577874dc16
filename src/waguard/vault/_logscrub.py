"""Run a command and copy its output to ours with secrets blanked out.

`bao server -dev` prints its root token and unseal key in a start-up banner, and there is no flag to
stop it. The dev server's output goes to a log file that people read and attach to bug reports, so
it passes through this filter first. It is run as a script by path (stdlib only, no waguard imports)
so that it starts fast and does not depend on the package being importable in the child.

Usage: python _logscrub.py ENV_NAME[,ENV_NAME...] -- command [args...]
The values of the named environment variables are replaced wherever they appear, and so is whatever
follows "Root Token:" or "Unseal Key:".
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

REDACTED = b"[redacted]"
_BANNER = re.compile(rb"^(?P<label>\s*(?:Root Token|Unseal Key)[^:\n]*:[ \t]*)\S[^\n]*", re.MULTILINE)


def scrub(line: bytes, secrets: list[bytes]) -> bytes:
    """Replace every secret, and any banner value, in one line of output."""
    for secret in secrets:
        line = line.replace(secret, REDACTED)
    return _BANNER.sub(rb"\g<label>" + REDACTED, line)


def main(argv: list[str]) -> int:
    """Run argv after "--", copy its stdout and stderr to our stdout scrubbed; return its exit status."""
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    secrets = [os.environ[n].encode() for n in argv[0].split(",") if os.environ.get(n)]
    child = subprocess.Popen(argv[2:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    # Ignore stop signals only now, after the child started with default handlers: the whole process
    # group gets SIGTERM, and we must keep copying until the child has shut down and closed its output.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = sys.stdout.buffer
    assert child.stdout is not None
    for line in child.stdout:
        out.write(scrub(line, secrets))
        out.flush()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
