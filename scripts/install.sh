#!/usr/bin/env bash
# Install webshocket (building its compiled speedups in place) and everything its tests need:
# Python packages from PyPI, and the system programs the tests run for real (redis-server,
# node, chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
# The browser test drives Debian's Chromium through Playwright (no browser download).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium fonts-liberation)
if [ "${#need_apt[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

"$PYTHON" -m pip install --disable-pip-version-check -q -e ".[dev]"
# Build the Cython extensions in place (editable installs may not keep them up to date).
"$PYTHON" setup.py -q build_ext --inplace
