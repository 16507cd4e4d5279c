# Two commands: `make demo` runs the whole system on loopback, `make test` runs every check.
# Both set up what is missing first: Debian's mosquitto, influxdb and postgresql packages (as
# root, or the command to run is printed), then the virtualenv in .venv with the project installed.
# (PostgreSQL's binaries are off PATH, in /usr/lib/postgresql/<version>/bin; the tests start it.)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SYSTEM_PACKAGES := mosquitto mosquitto-clients influxdb postgresql
STAMP := $(VENV)/.installed

.PHONY: setup system demo test lint unit bench clean

setup: system $(STAMP)

system:
	@missing=""; \
	for tool in mosquitto:mosquitto mosquitto_sub:mosquitto-clients influxd:influxdb; do \
		command -v $${tool%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${tool%%:*} ] || missing="$$missing $${tool#*:}"; \
	done; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y$$missing"; \
		if [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; sh -c "$$cmd"; \
		else echo "missing system packages:$$missing — run: sudo sh -c '$$cmd'"; exit 1; fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("binwatch needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/binwatch demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/compliance.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
