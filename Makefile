# Everything runs in the project's virtual environment, .venv, made with the system's python3
# (which may be externally managed, PEP 668): scripts/install.sh makes it and installs into it.
# PYTHON=/path/to/python uses another interpreter as it is (no venv is made).
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
INSTALL = VENV="$(VENV)" PYTHON="$(PYTHON)" bash scripts/install.sh

.PHONY: demo test install install-runtime lint bench

PACKET_TESTS = tests/test_speedups.py tests/test_twins_codec.py tests/test_fidelity.py tests/test_generic_clients.py \
	tests/test_hostile_input.py tests/test_rpc.py tests/test_pubsub.py tests/test_recovery.py tests/test_session.py \
	tests/test_testing.py tests/test_interop_052.py

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
	# msgspec is installed here, so the runs above use its Structs as packet classes; the tests of
	# packets, codec and clients again with our own classes (what an install without msgspec uses).
	WEBSHOCKET_NO_MSGSPEC=1 WEBSHOCKET_REQUIRE_EXTENSIONS=1 $(PYTHON) -m pytest -q $(PACKET_TESTS)
	WEBSHOCKET_NO_MSGSPEC=1 WEBSHOCKET_NO_EXTENSIONS=1 $(PYTHON) -m pytest -q $(PACKET_TESTS)

lint:
	$(PYTHON) -m ruff check webshocket tests examples benchmarks wheels
	$(PYTHON) -m mypy
	$(PYTHON) -m mkdocs build --strict --quiet --site-dir build/docs  # the API reference (mkdocs.yml)

bench:
	$(PYTHON) -m pytest benchmarks -q
