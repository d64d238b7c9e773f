#!/usr/bin/env bash
# The server's end-to-end tests (called by .ci/run after `swift test`): `nest serve` on a
# loopback port driven by the web UI's Python client, plain HTTP, a bounded load test and
# headless Chromium (Debian's chromium package). Needs the debug `nest` built by
# `swift build` (or NEST=PATH) and nothing from the network but the pinned packages.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="/opt/swift/usr/bin:$PATH"
[ -n "${NEST:-}" ] || swift build --product nest

venv=.build/server-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests-server/requirements.txt

start=$SECONDS
set +e
"$venv/bin/python" -m pytest -q -s -p no:cacheprovider tests-server
status=$?
set -e
echo "tests-server/ci.sh: server tests took $((SECONDS - start)) s"
if [ "$status" -eq 5 ]; then
    echo "tests-server/ci.sh: pytest collected no tests (exit 5): the server's tests are missing" >&2
    exit 1
fi
exit "$status"
