# One entry point for developers and CI. `make test` is what .ci/run calls.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck protos demo bench clean

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

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .cache airflow_home .pytest_cache .mypy_cache .ruff_cache
