# The two commands of the README:
#   make test      install what the suite needs (Debian's zookeeper, a virtualenv) and run it all
#   make cluster   bring up a local cluster: ZooKeeper, hosts hv1..hv3 (libvirtd + QEMU), their
#                  node daemons and a demo VM; MODE=test uses libvirt's test driver (no QEMU)
# Every target is idempotent: a second run only re-does what changed.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# zookeeper: jars only. libvirt-dev + pkg-config: to build libvirt-python. libvirt, QEMU,
# busybox, cpio: real hypervisor hosts with tiny guests. openipmi + ipmitool: simulated BMCs
# for fencing. ceph-* + qemu-block-extra: a single-host Ceph for RBD lock tests.
APT_PACKAGES := zookeeper libvirt-dev pkg-config libvirt-daemon libvirt-daemon-driver-qemu \
	libvirt-clients qemu-system-x86 busybox-static cpio openipmi ipmitool \
	ceph-mon ceph-osd ceph-common qemu-block-extra

.PHONY: test lint unit integration bench system-deps venv clean cluster cluster-down

test: lint
	$(BIN)/pytest -q

unit: venv
	$(BIN)/pytest -q tests/unit

integration: venv system-deps
	$(BIN)/pytest -q tests/integration

lint: venv system-deps
	$(BIN)/ruff check common client-cli node-daemon api-daemon tests benchmarks docs
	$(BIN)/ruff format --check common client-cli node-daemon api-daemon tests benchmarks docs
	$(BIN)/mypy

bench: venv system-deps
	$(BIN)/python benchmarks/vm_list.py
	$(BIN)/python benchmarks/lifecycle.py
	$(BIN)/python benchmarks/ha.py
	$(BIN)/python benchmarks/console.py

MODE ?= qemu

cluster: venv system-deps
	@$(BIN)/python -m tests.harness.cluster up --mode $(MODE)

cluster-down: venv
	@$(BIN)/python -m tests.harness.cluster down

system-deps: $(STAMPS)/system-deps

# Debian's zookeeper package only installs jars; the tests start their own servers.
$(STAMPS)/system-deps:
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get install -y --no-install-recommends $$missing \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $$missing; }; \
	fi
	@# libvirtd looks this user up before it reads qemu.conf (which runs guests as root here).
	@getent group libvirt-qemu >/dev/null || $(SUDO) groupadd -r libvirt-qemu
	@getent passwd libvirt-qemu >/dev/null || $(SUDO) useradd -r -g libvirt-qemu \
		-d /var/lib/libvirt -M -s /usr/sbin/nologin libvirt-qemu
	@touch $@

venv: $(STAMPS)/venv

$(STAMPS)/venv: pyproject.toml $(STAMPS)/system-deps
	@mkdir -p $(STAMPS)
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) $(STAMPS) .pytest_cache .mypy_cache .ruff_cache .cache
