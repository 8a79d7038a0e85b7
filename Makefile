# Two commands for a newcomer: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test soak lint bench profile unit integration stack-up stack-down stack-status clean-state schemas docs

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed, found " + sys.version)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## setup: venv, Python packages, Debian packages, Kafka jars (starts nothing)
setup: $(STAMP)
	$(BIN)/referrals stack prepare --test-tools

## demo: set everything up, start the stack and run the demo
demo: $(STAMP)
	$(BIN)/referrals demo

## test: set everything up and run every test (the stack is started if needed, and stopped again if the tests started it)
test: setup lint
	$(BIN)/pytest

## soak: the long variants of the fault-injection and hostile-input tests (8 times the events; tens of minutes)
soak: setup
	$(BIN)/pytest tests/integration -m faults --soak

## bench: the benchmark suite on the real stack (BENCH=--quick for 100k events); writes bench/results/<date>.json
bench: setup
	$(BIN)/python -m bench run $(BENCH)

## profile: one throughput run of the worker under py-spy; prints where its time goes
profile: setup
	$(BIN)/python -m bench profile $(BENCH)

## lint: pyflakes and bugbear checks (ruff) on code and tests
lint: $(STAMP)
	$(BIN)/ruff check --quiet referrals schemas producers streams consumers deploy bench tests

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: setup
	$(BIN)/pytest tests/integration

stack-up: $(STAMP)
	$(BIN)/referrals stack up

stack-down: $(STAMP)
	$(BIN)/referrals stack down

stack-status: $(STAMP)
	$(BIN)/referrals stack status

schemas: $(STAMP)
	$(BIN)/referrals schemas export

## docs: regenerate the settings reference in docs/configuration.md from referrals/settings.py
docs: $(STAMP)
	$(BIN)/python -m referrals.settings_reference --write

clean-state: $(STAMP)
	$(BIN)/referrals stack reset --yes
