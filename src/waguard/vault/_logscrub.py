"""Run a command and copy its output to ours with secrets blanked out.

`bao server -dev` prints its root token and unseal key in a start-up banner, and there is no flag to
stop it. The dev server's output goes to a log file that people read and attach to bug reports, so
it passes through this filter first. It is run as a script by path (stdlib only, no waguard imports)
so that it starts fast and does not depend on the package being importable in the child.

Usage: python _logscrub.py ENV_NAME[,ENV_NAME...] -- command [args...]
The values of the named environment variables are replaced wherever they appear, and so is whatever
follows "Root Token:" or "Unseal Key:".

When BAO_UNSEAL_KEY_FILE names a file, the unseal key from the banner is also written there (mode
0600) before the line is scrubbed: game-day drills seal the dev server to play "Vault is down", and
unsealing it again needs that key, which the banner is the only place to get. The log never has it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

REDACTED = b"[redacted]"
UNSEAL_KEY_FILE_ENV = "BAO_UNSEAL_KEY_FILE"
_BANNER = re.compile(rb"^(?P<label>\s*(?:Root Token|Unseal Key)[^:\n]*:[ \t]*)\S[^\n]*", re.MULTILINE)
_UNSEAL_KEY = re.compile(rb"^\s*Unseal Key[^:\n]*:[ \t]*(?P<key>\S+)")


def scrub(line: bytes, secrets: list[bytes]) -> bytes:
    """Replace every secret, and any banner value, in one line of output."""
    for secret in secrets:
        line = line.replace(secret, REDACTED)
    return _BANNER.sub(rb"\g<label>" + REDACTED, line)


def unseal_key(line: bytes) -> bytes | None:
    """The value of an "Unseal Key:" banner line, or None for any other line."""
    match = _UNSEAL_KEY.match(line)
    return match.group("key") if match else None


def keep_unseal_key(path: str, key: bytes) -> None:
    """Write `key` to `path` (mode 0600, parent made), replacing it whole so no reader sees half a key."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode does not apply to a leftover file
        f.write(key)
    os.replace(partial, path)


def main(argv: list[str]) -> int:
    """Run argv after "--", copy its stdout and stderr to our stdout scrubbed; return its exit status."""
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    secrets = [os.environ[n].encode() for n in argv[0].split(",") if os.environ.get(n)]
    key_file = os.environ.pop(UNSEAL_KEY_FILE_ENV, "")  # popped: the child has no use for it
    child = subprocess.Popen(argv[2:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    # Ignore stop signals only now, after the child started with default handlers: the whole process
    # group gets SIGTERM, and we must keep copying until the child has shut down and closed its output.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = sys.stdout.buffer
    assert child.stdout is not None
    for line in child.stdout:
        key = unseal_key(line) if key_file else None
        if key is not None:
            try:
                keep_unseal_key(key_file, key)
            except OSError as exc:  # the server still runs; only drills that unseal it will fail
                out.write(f"[logscrub] cannot keep the unseal key in {key_file}: {exc.strerror}\n".encode())
        out.write(scrub(line, secrets))
        out.flush()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
