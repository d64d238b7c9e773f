#!/usr/bin/env bash
# The training recipe's tests on CPU (called by .ci/run after `swift test`; they need
# no GPU and nothing from the network but the pinned packages).
# torch comes from the CPU wheel in /opt/wheels (or $TORCH_WHEEL): a plain
# `pip install torch` would pull gigabytes of CUDA packages, so without a wheel this stops.
set -euo pipefail
cd "$(dirname "$0")/.."

wheel="${TORCH_WHEEL:-$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n 1 || true)}"
if [ -z "$wheel" ] || [ ! -f "$wheel" ]; then
    echo "training/ci.sh: no CPU torch wheel (looked for /opt/wheels/torch-2.13.0+cpu-*.whl; set TORCH_WHEEL=PATH)." >&2
    exit 1
fi

venv=.build/training-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r training/requirements.txt

start=$SECONDS
set +e
HF_HUB_OFFLINE=1 PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" -m pytest -q -p no:cacheprovider training/tests
status=$?
set -e
echo "training/ci.sh: recipe tests took $((SECONDS - start)) s"
if [ "$status" -eq 5 ]; then
    echo "training/ci.sh: pytest collected no tests (exit 5): the recipe's tests are missing" >&2
    exit 1
fi
exit "$status"
