PYTHON ?= python3

.PHONY: demo test install lint bench

# Run the demo: a server and a client exercising RPC, streaming, pub/sub (no external service).
demo: install
	$(PYTHON) examples/demo.py

install:
	bash scripts/install.sh

# Install everything and run the whole test suite twice: compiled, then pure Python.
test: install
	WEBSHOCKET_REQUIRE_EXTENSIONS=1 $(PYTHON) -m pytest -q
	WEBSHOCKET_NO_EXTENSIONS=1 $(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check webshocket tests
	$(PYTHON) -m mypy

bench:
	$(PYTHON) -m pytest benchmarks -q
