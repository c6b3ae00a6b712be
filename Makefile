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

.PHONY: test lint unit integration bench system-deps venv clean cluster cluster-down deb demo

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

# Every benchmark in turn (15 to 20 minutes on 2 cores; the machine should be quiet), their
# figures written to docs/benchmarks.md (benchmarks/README.md).
bench: venv system-deps
	$(BIN)/python benchmarks/report.py

MODE ?= qemu

cluster: venv system-deps
	@$(BIN)/python -m tests.harness.cluster up --mode $(MODE)

cluster-down: venv
	@$(BIN)/python -m tests.harness.cluster down

# A guided tour on the local cluster (brought up first if it is not running; left running).
# It pauses between steps on a terminal; DEMO_ARGS=--no-pause runs straight through.
demo: venv system-deps
	@$(BIN)/python -m tests.harness.demo $(DEMO_ARGS)

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

# Debian packages (debian/README.md): the build dependencies of debian/control from apt if
# missing, then dpkg-buildpackage in a copy of the working tree (uncommitted changes
# included, no .venv, .git or caches); the four .deb files end up in build/deb/.
DEB_TREE := build/deb-tree

deb:
	@command -v dpkg-checkbuilddeps >/dev/null || $(SUDO) apt-get install -y --no-install-recommends dpkg-dev \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends dpkg-dev; }
	@dpkg-checkbuilddeps 2>/dev/null || $(SUDO) apt-get build-dep -y --no-install-recommends ./ \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get build-dep -y --no-install-recommends ./; }
	@rm -rf $(DEB_TREE) && mkdir -p $(DEB_TREE)/pvc build/deb
	@tar -cf - --exclude='./.*' --exclude=./build --exclude=./dist --exclude=__pycache__ \
		--exclude='*.egg-info' . | tar -xf - -C $(DEB_TREE)/pvc
	@echo "dpkg-buildpackage -us -uc -b in $(DEB_TREE)/pvc (log: $(DEB_TREE)/build.log)"
	@cd $(DEB_TREE)/pvc && env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV \
		PATH=/usr/bin:/bin:/usr/sbin:/sbin:$$PATH dpkg-buildpackage -us -uc -b >../build.log 2>&1 \
		|| { tail -n 40 ../build.log; exit 1; }
	@rm -f build/deb/*.deb && cp $(DEB_TREE)/*.deb build/deb/ && ls -1 build/deb/*.deb

clean:
	rm -rf $(VENV) $(STAMPS) .pytest_cache .mypy_cache .ruff_cache .cache
