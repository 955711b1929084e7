# ksha — the commands a newcomer needs: `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
APT_PACKAGES := debootstrap systemd-container iproute2 iputils-ping haproxy keepalived etcd-server etcd-client
PYTEST_ARGS ?=

.PHONY: setup apt venv lint test test-quick demo lab-down clean

setup: apt venv  ## install everything the project needs (idempotent)

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(BIN)/ksha

$(BIN)/ksha: setup.cfg requirements/constraints.txt lab/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[test]' -e ./lab
	touch $@

lint: venv
	$(BIN)/ruff check ksha lab salt/_runners salt/_states salt/_modules salt/_pillar tests bench
	$(BIN)/ruff format --check ksha lab salt/_runners salt/_states salt/_modules salt/_pillar tests bench
	$(BIN)/yamllint -s salt/ksha/defaults.yaml salt/ksha/osfamilymap.yaml pillar/ .yamllint
	$(BIN)/salt-lint -x 205 $$(find salt pillar -name '*.sls' -o -name '*.jinja' -o -name '*.example' | sort)

test: setup lint  ## the whole suite, lab tests included
	$(BIN)/pytest $(PYTEST_ARGS)

test-quick: venv lint  ## everything but the lab
	$(BIN)/pytest -m "not lab" $(PYTEST_ARGS)

demo: setup  ## bring the 6-host lab up and run orch.ksha against it
	$(BIN)/ksha-lab demo

lab-down:
	$(BIN)/ksha-lab down

clean: lab-down
	rm -rf $(VENV) *.egg-info lab/*.egg-info
