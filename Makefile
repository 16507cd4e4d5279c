# Two commands: `make demo` runs the whole system on loopback, `make test` runs every check.
# Both set up what is missing first: Debian's mosquitto, influxdb, postgresql and chromium
# packages (the last two for the tests, which start PostgreSQL and drive the console in the
# browser), as root, or the command to run is printed; then the virtualenv in .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Each Debian package binwatch needs, behind a file that shows it is installed (PostgreSQL's
# binaries are off PATH; the CJK font lets the browser tests' screenshots show Chinese).
SYSTEM_PACKAGES := \
	/usr/sbin/mosquitto:mosquitto \
	/usr/bin/mosquitto_sub:mosquitto-clients \
	/usr/bin/influxd:influxdb \
	/usr/lib/postgresql/*/bin/postgres:postgresql \
	/usr/bin/chromium:chromium \
	/usr/share/fonts/truetype/wqy/wqy-microhei.ttc:fonts-wqy-microhei
STAMP := $(VENV)/.installed
# Test modules run in parallel, each whole on one worker (its module-wide fixtures stay one):
# most of a test's time is waiting on servers it started, so two workers on two cores take about
# half the time of one (docs/deployment.md). Each worker starts its own servers.
TEST_WORKERS ?= 2

.PHONY: setup system demo test lint unit bench clean

setup: system $(STAMP)

system:
	@missing=""; \
	for entry in $(SYSTEM_PACKAGES); do \
		ls $${entry%%:*} >/dev/null 2>&1 || missing="$$missing $${entry#*:}"; \
	done; \
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
	@echo "installing binwatch's Python packages into $(VENV) (a minute or two; pip lists each)"
	$(BIN)/pip install --progress-bar on -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/binwatch demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

bench: setup
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/compliance.py
	$(BIN)/python bench/console.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
