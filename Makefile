# Everything runs in the project's virtual environment, .venv, made with the system's python3
# (which may be externally managed, PEP 668): scripts/install.sh makes it and installs into it.
# PYTHON=/path/to/python uses another interpreter as it is (no venv is made).
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
INSTALL = VENV="$(VENV)" PYTHON="$(PYTHON)" bash scripts/install.sh

.PHONY: demo test install install-runtime lint bench

# Run the demo: a server and a client exercising RPC, streaming, pub/sub. Installs Python
# packages only (the package and its runtime dependencies); no system service is needed.
demo: install-runtime
	$(PYTHON) examples/demo.py

install-runtime:
	$(INSTALL) runtime

# Everything the tests need: dev extras, the compiled modules built in place, and the programs
# the tests run for real (redis-server, node, chromium; apt-get, only what is missing).
install:
	$(INSTALL) dev

# Install everything, lint, then run the whole test suite twice: compiled, then pure Python.
test: install
	$(MAKE) --no-print-directory lint PYTHON="$(PYTHON)"
	WEBSHOCKET_REQUIRE_EXTENSIONS=1 $(PYTHON) -m pytest -q
	# The wheel tests check the compiled wheel; they have nothing to do in the pure run.
	WEBSHOCKET_NO_EXTENSIONS=1 $(PYTHON) -m pytest -q --deselect tests/test_wheel.py --deselect tests/test_bench_installed.py

lint:
	$(PYTHON) -m ruff check webshocket tests examples benchmarks wheels
	$(PYTHON) -m mypy
	$(PYTHON) -m mkdocs build --strict --quiet --site-dir build/docs  # the API reference (mkdocs.yml)

bench:
	$(PYTHON) -m pytest benchmarks -q
