#!/bin/sh
# System packages the test suite needs that pip cannot provide: Debian's prometheus-alertmanager
# (the real Alertmanager the intake's end-to-end test delivers from; amtool tests detection/'s
# routing), prometheus (promtool checks and unit-tests detection/'s rules; `waguard up` runs it) and
# chromium (the browser test); postgresql, redis-server and haproxy (the scaled profile, `waguard up
# --profile scaled`, and its end-to-end test: Prefect's database, its messaging and the load balancer).
# Idempotent: installs only what is missing, runs `apt-get update` once first, quietly.
# It never fails the build itself: when it cannot install, it says why, and the tests that need the
# package fail in CI (CI=true) or skip locally with that reason.
set -u

missing=""
command -v prometheus-alertmanager >/dev/null 2>&1 || missing="$missing prometheus-alertmanager"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
# Debian keeps initdb and pg_ctl off PATH, under /usr/lib/postgresql/<version>/bin.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
    || missing="$missing postgresql"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v haproxy >/dev/null 2>&1 || missing="$missing haproxy"
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "sysdeps: apt-get is not available on this system; install by hand:$missing" >&2
    exit 0
fi

as_root=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root="sudo -n"
    else
        echo "sysdeps: not root and no password-less sudo; install by hand:$missing" >&2
        exit 0
    fi
fi

echo "sysdeps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# apt's chatter goes to a log that is shown only when something fails.
if ! $as_root apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2
    echo "sysdeps: apt-get update failed (no network or no apt sources?); still missing:$missing" >&2
    exit 0
fi
# shellcheck disable=SC2086  # word splitting of the package list is intended
if ! $as_root apt-get install -y -qq --no-install-recommends $missing >"$log" 2>&1; then
    cat "$log" >&2
    echo "sysdeps: apt-get install failed; still missing:$missing" >&2
    exit 0
fi
exit 0
