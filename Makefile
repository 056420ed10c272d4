# Two commands for a fresh clone: `make demo` (the main job) and `make test` (the whole suite).
# Each installs what it needs (uv, then the locked environment) with nothing but Python on the machine.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export AWS_DEFAULT_REGION ?= us-east-1
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen
SAM := $(UV) tool run --from aws-sam-cli==1.170.0 sam

.PHONY: setup test lint typecheck unit validate demo serve bench build clean

setup:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	@$(UV) sync --frozen --all-extras --quiet

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: setup
	$(RUN) mypy model functions training nbc

validate: setup
	$(SAM) validate --lint --template template.yaml

unit: setup
	$(RUN) pytest -n 2

test: lint typecheck validate unit

demo: setup
	$(RUN) nbc demo

serve: setup
	$(RUN) nbc serve --host 127.0.0.1 --port 8080

bench: setup
	$(RUN) python bench/ingest.py
	$(RUN) python bench/train.py
	$(RUN) python bench/score.py

build: setup
	$(SAM) build --template template.yaml

clean:
	rm -rf .venv .aws-sam .nbc build .pytest_cache .mypy_cache .ruff_cache
