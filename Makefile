# The two commands of the README:
#   make test      install what the suite needs (Debian's zookeeper, a virtualenv) and run it all
#   make cluster   (arrives with the node daemon) bring up a local cluster
# Every target is idempotent: a second run only re-does what changed.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := zookeeper

.PHONY: test lint unit integration bench system-deps venv clean

test: lint
	$(BIN)/pytest -q

unit: venv
	$(BIN)/pytest -q tests/unit

integration: venv system-deps
	$(BIN)/pytest -q tests/integration

lint: venv system-deps
	$(BIN)/ruff check common client-cli tests benchmarks docs
	$(BIN)/ruff format --check common client-cli tests benchmarks docs
	$(BIN)/mypy

bench: venv system-deps
	$(BIN)/python benchmarks/vm_list.py

system-deps: $(STAMPS)/system-deps

# Debian's zookeeper package only installs jars; the tests start their own servers.
$(STAMPS)/system-deps:
	@mkdir -p $(STAMPS)
	@if ! dpkg-query -W -f='$${Status}' $(APT_PACKAGES) 2>/dev/null | grep -q "install ok installed"; then \
		$(SUDO) apt-get install -y --no-install-recommends $(APT_PACKAGES) \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $(APT_PACKAGES); }; \
	fi
	@touch $@

venv: $(STAMPS)/venv

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) $(STAMPS) .pytest_cache .mypy_cache .ruff_cache
