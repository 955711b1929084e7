# ksha — the commands a newcomer needs: `make demo`, `make test`.
VENV   := .venv
BIN    := $(VENV)/bin
# python3-venv: Debian's python3 has no venv/ensurepip without it. gcc, libc6-dev, python3-dev:
# Salt's dependency timelib ships no wheel and is compiled on install (make check-clean proves the list).
APT_PACKAGES := debootstrap systemd-container iproute2 iputils-ping haproxy keepalived etcd-server etcd-client \
                python3-venv python3-dev gcc libc6-dev
# The interpreter the venv is made from: `make setup PYTHON=/path/to/python3.X` to choose; by
# default the first of PYTHON_CANDIDATES that is >= 3.11 and has venv and ensurepip (the system's
# python3 first: it is the one the apt packages above complete).
PYTHON ?=
PYTHON_CANDIDATES := /usr/bin/python3 python3 python3.13 python3.12 python3.11
PYTHON_OK := import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))
PYTEST_ARGS ?=

.PHONY: setup apt venv lab-base lint test test-quick demo lab-down clean check-clean

setup: apt venv lab-base  ## install everything the project needs (idempotent)

# The lab hosts' base tree (debootstrap of Debian 12 with the pinned Salt; ~80 s once, then
# cached under /var/cache/ksha-lab by its inputs): built here so that the lab tests find it.
# Root only (debootstrap); without root the lab tests cannot run at all, and this is skipped;
# SKIP_LAB_BASE=1 skips it too (tools/check-clean: no lab in its chroot).
lab-base: apt venv
	@if [ -n "$(SKIP_LAB_BASE)" ]; then echo "lab-base: skipped (SKIP_LAB_BASE)"; \
	elif [ "$$(id -u)" = 0 ]; then $(BIN)/ksha-lab base; else echo "lab-base: not root, skipped (the lab needs root)"; fi

# The lab tests read kubeconfigs with the real kubectl: Debian's kubernetes-client, unless a
# kubectl is on the PATH already (another package's).
KUBECTL_PACKAGE := $(if $(shell command -v kubectl),,kubernetes-client)

apt:
	@missing=$$(for p in $(APT_PACKAGES) $(KUBECTL_PACKAGE); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(BIN)/ksha

$(BIN)/ksha: setup.cfg requirements/constraints.txt lab/pyproject.toml
	@# a venv without pip is what `python3 -m venv` leaves where ensurepip is missing: make it anew
	@test -x $(BIN)/pip || { rm -rf $(VENV); for py in $(or $(PYTHON),$(PYTHON_CANDIDATES)); do \
	  if command -v $$py >/dev/null && $$py -c '$(PYTHON_OK)' 2>/dev/null; then \
	    echo "venv: $$py -m venv $(VENV) ($$($$py -V))"; $$py -m venv $(VENV) && exit 0; rm -rf $(VENV); exit 1; \
	  fi; \
	done; echo "venv: no Python >= 3.11 with venv and ensurepip among: $(or $(PYTHON),$(PYTHON_CANDIDATES))" \
	  "(on Debian/Ubuntu: make apt, which installs python3-venv)" >&2; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[test]' -e ./lab
	touch $@

lint: venv
	$(BIN)/ruff check ksha lab salt/_runners salt/_states salt/_modules salt/_pillar tests bench
	$(BIN)/ruff format --check ksha lab salt/_runners salt/_states salt/_modules salt/_pillar tests bench
	$(BIN)/yamllint -s salt/ksha/defaults.yaml salt/ksha/osfamilymap.yaml pillar/ .yamllint
	$(BIN)/salt-lint -x 205 $$(find salt pillar -name '*.sls' -o -name '*.jinja' -o -name '*.example' | sort)

# The lab tests and the others run at once (tools/test-suite says why); PYTEST_ARGS go to both.
test: setup lint  ## the whole suite, lab tests included
	tools/test-suite $(BIN)/pytest $(PYTEST_ARGS)

test-quick: venv lint  ## everything but the lab
	$(BIN)/pytest -m "not lab" $(PYTEST_ARGS)

demo: setup  ## bring the 6-host lab up and run orch.ksha against it
	$(BIN)/ksha-lab demo

lab-down:
	$(BIN)/ksha-lab down

check-clean:  ## root: make setup && make test-quick in a fresh Debian 12 chroot (debootstrap, git + make only); slow
	tools/check-clean

clean: lab-down
	rm -rf $(VENV) *.egg-info lab/*.egg-info
