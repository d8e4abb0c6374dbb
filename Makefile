PYTHON ?= python3

.PHONY: demo test install lint bench

# Run the demo: a server and a client exercising RPC, streaming, pub/sub (no external service).
demo: install
	$(PYTHON) examples/demo.py

install:
	PYTHON="$(PYTHON)" bash scripts/install.sh

# Install everything, lint, then run the whole test suite twice: compiled, then pure Python.
test: install
	$(MAKE) --no-print-directory lint PYTHON="$(PYTHON)"
	WEBSHOCKET_REQUIRE_EXTENSIONS=1 $(PYTHON) -m pytest -q
	# The wheel test checks the compiled wheel; it has nothing to do in the pure run.
	WEBSHOCKET_NO_EXTENSIONS=1 $(PYTHON) -m pytest -q --deselect tests/test_wheel.py

lint:
	$(PYTHON) -m ruff check webshocket tests examples benchmarks wheels
	$(PYTHON) -m mypy

bench:
	$(PYTHON) -m pytest benchmarks -q
