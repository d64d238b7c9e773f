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

. tools/venv_pytest.sh
venv=.build/training-venv
venv_ready "$venv"
venv_pip "$venv" "$wheel"
venv_pip "$venv" -r training/requirements.txt
HF_HUB_OFFLINE=1 PATH="$PWD/$venv/bin:$PATH" venv_pytest training/ci.sh "$venv" training/tests
