#!/usr/bin/env bash
# The server's end-to-end tests (called by .ci/run after `swift test`): `nest serve` on a
# loopback port driven by the web UI's Python client, plain HTTP, a bounded load test and
# headless Chromium (Debian's chromium package). Needs the debug `nest` built by
# `swift build` (or NEST=PATH) and nothing from the network but the pinned packages.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="/opt/swift/usr/bin:$PATH"
[ -n "${NEST:-}" ] || swift build --product nest

. tools/venv_pytest.sh
venv=.build/server-venv
venv_ready "$venv"
venv_pip "$venv" -r tests-server/requirements.txt
venv_pytest tests-server/ci.sh "$venv" -s tests-server
