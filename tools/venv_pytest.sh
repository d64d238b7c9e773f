# Shared by training/ci.sh and tests-server/ci.sh (sourced, not run): a virtual
# environment under .build and a pytest run that counts "no tests collected" as a failure.

# venv_ready VENV: creates VENV once; later calls reuse it.
venv_ready() {
    [ -x "$1/bin/python" ] || python3 -m venv "$1"
}

# venv_pip VENV ARGS...: a quiet pip install into VENV.
venv_pip() {
    local venv=$1; shift
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
}

# venv_pytest LABEL VENV PYTEST-ARGS...: runs pytest, prints its time, and exits with its
# status, except that exit 5 (nothing collected) means the tests went missing and fails.
venv_pytest() {
    local label=$1 venv=$2; shift 2
    local start=$SECONDS status
    set +e
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
    status=$?
    set -e
    echo "$label: tests took $((SECONDS - start)) s"
    if [ "$status" -eq 5 ]; then
        echo "$label: pytest collected no tests (exit 5): the tests are missing" >&2
        exit 1
    fi
    exit "$status"
}
