# Two entry points on a fresh machine: `make serve` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export BENTOML_HOME ?= $(CURDIR)/.bentoml

.PHONY: install system-deps serve test test-slow reliability bench lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests need: Chromium for the browser tests (driven by Playwright with
# this executable; no browser download) and the PostgreSQL server, which the SQL-source tests
# start themselves on loopback from /usr/lib/postgresql/*/bin (no system service is used).
system-deps:
	@{ command -v chromium >/dev/null 2>&1 && \
		ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium postgresql >/dev/null; }

serve: install
	$(BIN)/netprog serve

test: install system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

test-slow: install system-deps
	$(BIN)/pytest -m "slow"

# The whole reliability suite, its long parts (load, full fuzzing budget) included; see
# docs/reliability.md. The quick parts also run in `make test`.
reliability: install system-deps
	NETPROG_RELIABILITY_DOC=write $(BIN)/pytest tests/reliability -m "not bench"

bench: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run

# mypy checks what [tool.mypy] in pyproject.toml names.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
