#!/usr/bin/env bash
# Install webshocket for `make demo` or `make test`, on a stock Debian 12 / Ubuntu 24.04 whose
# system Python is externally managed (PEP 668): everything Python goes into the project's
# virtual environment (.venv, made with the system python3 -m venv).
#
#   scripts/install.sh runtime   the package and its runtime dependencies, compiled modules
#                                built if a compiler is there (pure Python otherwise, with a
#                                warning). Python packages only: apt-get runs only if the
#                                system python3 cannot make a virtual environment (python3-venv).
#   scripts/install.sh dev       also the dev extras (tests, linters, Cython), the compiled
#                                modules built in place, and the system programs the tests run
#                                for real: redis-server, node and npm, chromium (apt-get, only
#                                what is missing). A Redis service the install starts is stopped
#                                and disabled: the tests start their own redis-server.
#
# Environment: VENV (default .venv), PYTHON (default $VENV/bin/python; another interpreter is
# used as it is, no venv made), SYSTEM_PYTHON (default python3). Works as root or with sudo.
# A second run with nothing changed only checks (a stamp in the venv records what it installed).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-dev}"
case "$mode" in runtime | dev) ;; *) echo "usage: $0 [runtime|dev]" >&2; exit 2 ;; esac
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-$VENV/bin/python}"
SYSTEM_PYTHON="${SYSTEM_PYTHON:-python3}"
make_venv=0
[ "$PYTHON" = "$VENV/bin/python" ] && make_venv=1

say() { printf 'install: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root to run: $* (run as root, or install sudo)"
        exit 1
    fi
}

dpkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

apt_install() {
    [ "$#" -gt 0 ] || return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        say "missing: $* -- install them with your system's package manager, then run make again"
        exit 1
    fi
    say "apt-get install $*"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Stop and disable the redis-server service that installing Debian's package starts (systemd or sysv init).
stop_redis_service() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now --quiet redis-server.service 2>/dev/null || true
        say "stopped and disabled the redis-server service (the tests start their own redis-server)"
    elif [ -x /etc/init.d/redis-server ]; then
        as_root /etc/init.d/redis-server stop >/dev/null 2>&1 || true
        as_root update-rc.d redis-server disable >/dev/null 2>&1 || true
        say "stopped and disabled the redis-server service (the tests start their own redis-server)"
    fi
}

# ---------------------------------------------------------------- system packages
need_apt=()
if [ "$make_venv" -eq 1 ] && ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    if ! command -v "$SYSTEM_PYTHON" >/dev/null 2>&1; then
        say "no $SYSTEM_PYTHON on PATH: install Python 3.10+ (apt-get install python3 python3-venv)"
        exit 1
    fi
    # Debian and Ubuntu ship venv's ensurepip separately, in python3-venv.
    "$SYSTEM_PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1 || need_apt+=(python3-venv)
fi
new_redis=0
if [ "$mode" = dev ]; then
    build_python="$PYTHON"
    [ "$make_venv" -eq 1 ] && build_python="$SYSTEM_PYTHON"
    # A C compiler and Python's headers: the compiled run of the suite needs the compiled modules.
    command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
    "$build_python" -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        2>/dev/null || need_apt+=(python3-dev)
    if ! command -v redis-server >/dev/null 2>&1; then
        need_apt+=(redis-server)
        new_redis=1
    fi
    command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
    command -v npm >/dev/null 2>&1 || need_apt+=(npm)
    # The browser tests drive the system's Chromium through Playwright (no browser download).
    # Debian calls it chromium; Ubuntu chromium-browser (which installs the snap).
    chromium_package=chromium
    grep -qs '^ID=ubuntu' /etc/os-release && chromium_package=chromium-browser
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need_apt+=("$chromium_package")
    if command -v dpkg-query >/dev/null 2>&1; then
        dpkg_installed fonts-liberation || need_apt+=(fonts-liberation)
    fi
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
    apt_install "${need_apt[@]}"
    if [ "$new_redis" -eq 1 ]; then
        stop_redis_service
    fi
fi

# ---------------------------------------------------------------- the virtual environment
if [ "$make_venv" -eq 1 ] && ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    say "making $VENV with $(command -v "$SYSTEM_PYTHON")"
    "$SYSTEM_PYTHON" -m venv "$VENV"
fi

# ---------------------------------------------------------------- Python packages
# What an install depends on: the interpreter, the project's metadata and build script and, for
# the runtime install (which builds the compiled modules only then), their sources (the symbolic
# links in _speedups/ lead to the pure twins). A dev install rebuilds them in place at every run.
stamp_key() {
    {
        echo "$1"
        "$PYTHON" -c 'import sys; print(sys.version, sys.prefix)'
        cat pyproject.toml setup.py
        if [ "$1" = runtime ]; then
            command -v cc || true # installing a compiler later builds the compiled modules then
            find -L _speedups -type f \( -name '*.py' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.h' \) \
                -print0 | sort -z | xargs -0 cat
        fi
    } | sha256sum | cut -d' ' -f1
}
# The stamps live in the environment itself, so a new venv starts without them (none outside a venv).
stamp_dir="$("$PYTHON" -c 'import sys; print(sys.prefix if sys.prefix != sys.base_prefix else "")')"
stamp_matches() { # mode
    [ -n "$stamp_dir" ] && [ -f "$stamp_dir/webshocket-install-$1" ] &&
        [ "$(cat "$stamp_dir/webshocket-install-$1")" = "$(stamp_key "$1")" ]
}
# The package must still be importable from this checkout (an editable install of it); -I: not
# from the current directory.
installed_here() {
    local where
    where="$("$PYTHON" -I -c 'import os, webshocket; print(os.path.realpath(os.path.dirname(webshocket.__file__)))' 2>/dev/null)" ||
        return 1
    [ "$where" = "$(pwd -P)/webshocket" ]
}

have=""
if installed_here; then
    if stamp_matches dev; then
        have=dev # covers the runtime install too
    elif [ "$mode" = runtime ] && stamp_matches runtime; then
        have=runtime
    fi
fi
if [ -n "$have" ]; then
    say "$PYTHON: webshocket ($have install) is up to date"
else
    extras=""
    [ "$mode" = dev ] && extras="[dev]"
    say "pip install -e .$extras into $PYTHON"
    "$PYTHON" -m pip install --disable-pip-version-check -q -e ".$extras"
    [ -z "$stamp_dir" ] || stamp_key "$mode" >"$stamp_dir/webshocket-install-$mode"
    have="$mode"
fi

if [ "$have" = dev ]; then
    # Build the compiled modules in place, again if their sources changed (incrementally: only
    # what changed is rebuilt). A failed build warns and leaves the pure-Python twins in use.
    "$PYTHON" setup.py -q build_ext --inplace
fi

if [ "$mode" = dev ] && [ ! clients/js/node_modules/.package-lock.json -nt clients/js/package-lock.json ]; then
    say "npm ci in clients/js (the JavaScript client's dev dependencies)"
    (cd clients/js && npm ci --no-audit --no-fund --loglevel=error)
fi
# The Node.js ws server of the end-to-end benchmark (webshocket/bench/servers/node_ws.mjs): its packages.
if [ "$mode" = dev ] && command -v npm >/dev/null 2>&1 &&
    [ ! benchmarks/node_modules/.package-lock.json -nt benchmarks/package-lock.json ]; then
    say "npm ci in benchmarks (ws, bufferutil, msgpackr: the benchmark's Node.js server)"
    (cd benchmarks && npm ci --no-audit --no-fund --loglevel=error)
fi
