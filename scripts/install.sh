#!/usr/bin/env bash
# Install webshocket (building its compiled speedups in place) and everything its tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if command -v node >/dev/null 2>&1; then :; else
    echo "note: node is not installed; the Node.js client test will install it via apt-get" >&2
fi
"$PYTHON" -m pip install --disable-pip-version-check -q -e ".[dev]"
# Build the Cython extensions in place (editable installs may not keep them up to date).
"$PYTHON" setup.py -q build_ext --inplace
