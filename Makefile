# One entry point for developers and CI. `make test` is what .ci/run calls.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The demo runs from the runtime package alone (Airflow, no TensorFlow or test tools).
DEMO_VENV ?= .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed
# The end-to-end UI tests drive Debian's Chromium; apt-get installs it on a fresh machine.
BROWSER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The distributed stack's tests (CeleryExecutor) run Debian's PostgreSQL and Redis servers of
# their own on 127.0.0.1; apt-get installs them on a fresh machine.
SERVERS := /usr/bin/redis-server /usr/lib/postgresql

.PHONY: venv browser servers test test-fast fuzz lint typecheck protos demo ui bench clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

$(STAMP): pyproject.toml Makefile | $(BIN)/uv
	$(BIN)/uv pip install --python $(BIN)/python -e '.[test]'
	# TF Serving's protos, test-only ground truth; the wheel declares the full tensorflow, which
	# tensorflow-cpu already provides, so it goes in without its dependencies.
	$(BIN)/uv pip install --python $(BIN)/python --no-deps tensorflow-serving-api==2.21.0
	touch $(STAMP)

venv: $(STAMP)

$(BROWSER):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver

browser: $(BROWSER)

$(SERVERS):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql redis-server

servers: $(SERVERS)

# The whole suite, in two worker processes, a test file to each in turn (most of the suite waits
# on servers, Airflow and killed children; a file's module fixtures, such as the Airflow the UI
# walk drives, live once); the 15 slowest tests are listed at its end.
test: $(STAMP) $(BROWSER) $(SERVERS)
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15 $(PYTEST_ARGS)

# The everyday tier: no TensorFlow models, no servers, no Airflow services (well under a minute).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not tf and not integration" -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

$(DEMO_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(DEMO_VENV)/bin/uv pip install --python $(DEMO_VENV)/bin/python -e .
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/python scripts/demo.py

# The web UI on the demo's Airflow home (scripts/demo_ui.py: standalone's services on 127.0.0.1, our example DAGs only).
ui: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/python scripts/demo.py --ui

# Mutated TensorFlow-written models for 10 minutes (SEED, FUZZ_SECONDS to change); figures go to
# benchmarks/RESULTS.md and defects, with their models, to test-artifacts/fuzz/.
SEED ?= 1
FUZZ_SECONDS ?= 600
fuzz: $(STAMP)
	$(BIN)/python tests/fuzz/run.py --seconds $(FUZZ_SECONDS) --seed $(SEED)

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(DEMO_VENV) test-artifacts .cache airflow_home .pytest_cache .mypy_cache .ruff_cache
