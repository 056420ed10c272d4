# Two commands for a fresh clone: `make demo` (the main job) and `make test` (the whole suite).
# Each installs what it needs (uv, then the locked environment) with nothing but Python on the machine.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
# Some machines (the CI's among them) set PYTHONDONTWRITEBYTECODE: every process (pytest workers, moto servers, Dask
# workers, CLI subprocesses) then recompiles botocore, scipy, sklearn and pandas from source on import. Let Python
# cache the bytecode of what it actually imports, once (bench/RESULTS.md, "Test suite and environment").
unexport PYTHONDONTWRITEBYTECODE
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen
SAM := $(UV) tool run --from aws-sam-cli==1.170.0 sam

.PHONY: setup test lint typecheck unit validate scan fuzz demo serve bench build openapi clean

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

# Infrastructure security scan (checkov, settings and the reasoned skip list in .checkov.yaml). checkov pins an old
# boto3, so it is locked in its own dependency group and runs in a throwaway environment, never in .venv.
# checkov exits 0 on a template it cannot parse: an unparsed or empty scan fails here.
SCAN := $(UV) run --quiet --frozen --isolated --no-default-groups --only-group scan
scan: setup
	@out=$$(BC_SKIP_MAPPING=TRUE $(SCAN) checkov --config-file .checkov.yaml 2>&1); status=$$?; echo "$$out"; \
	if [ $$status -ne 0 ]; then exit $$status; fi; \
	if grep -qE 'Parsing errors: [1-9]' <<<"$$out" || ! grep -qE 'Passed checks: [1-9]' <<<"$$out"; then \
		echo "scan: template.yaml was not scanned" >&2; exit 1; fi

# loadgroup: tests marked xdist_group (the hostile suite shares one live server) stay on one worker.
unit: setup
	$(RUN) pytest -n 2 --dist loadgroup

test: lint typecheck validate scan unit

# The hostile suite at length (tests/hostile/): schemathesis over every operation of a live `nbc serve` with its
# API key, every phase (coverage included) and check, for FUZZ_SECONDS with a new seed, against a small trained model
# (built once into .nbc/hostile; delete it to rebuild), then the repros and the concurrent load.
FUZZ_SECONDS ?= 300
FUZZ_EXAMPLES ?= 100
HOSTILE := .nbc/hostile
fuzz: setup
	@test -f $(HOSTILE)/models/CURRENT || { \
		$(RUN) nbc simulate --customers 1500 --days 30 --seed 5 --out $(HOSTILE)/sim && \
		$(RUN) nbc train --source $(HOSTILE)/sim --store $(HOSTILE)/models --no-funnel --max-decisions 500 && \
		$(RUN) nbc promote --store $(HOSTILE)/models --force; }
	NBC_HOSTILE_MODEL_STORE=$(abspath $(HOSTILE)/models) NBC_FUZZ_SECONDS=$(FUZZ_SECONDS) \
	NBC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) NBC_FUZZ_PHASES=examples,coverage,fuzzing,stateful NBC_FUZZ_SEED=random \
		$(RUN) pytest tests/hostile -p no:xdist -q -s -rxX

demo: setup
	$(RUN) nbc demo

serve: setup
	$(RUN) nbc serve --host 127.0.0.1 --port 8080

bench: setup
	$(RUN) python bench/ingest.py
	$(RUN) python bench/train.py
	$(RUN) python bench/score.py

# Builds in the source tree (no copy of the repository per function); needs make and uv, not Docker.
build: setup
	$(SAM) build --template template.yaml --build-in-source

# The published OpenAPI schema of the whole HTTP API (a test holds the committed file equal to the code).
openapi: setup
	$(RUN) nbc openapi --out docs/openapi.json

# Lambda artifacts: `sam build` (BuildMethod: makefile) runs `make build-<LogicalId>` with ARTIFACTS_DIR set.
# One script does the work; each target names its function folder and the packages it can do without.
# LAMBDA_ARCH / LAMBDA_PYTHON select the target platform (tests build for the host with x86_64).
export LAMBDA_ARCH ?= arm64
export LAMBDA_PYTHON ?= 3.12
BUILD_FUNCTION := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))scripts/build_function.sh

build-IngestFunction:
	$(BUILD_FUNCTION) ingest "$(ARTIFACTS_DIR)"

build-IngestQueueFunction:
	$(BUILD_FUNCTION) ingest_queue "$(ARTIFACTS_DIR)" fastapi mangum

build-AggregatorFunction:
	$(BUILD_FUNCTION) aggregator "$(ARTIFACTS_DIR)" fastapi mangum

build-ScoreFunction:
	$(BUILD_FUNCTION) score "$(ARTIFACTS_DIR)"

build-AudienceFunction:
	$(BUILD_FUNCTION) audience "$(ARTIFACTS_DIR)" fastapi mangum

clean:
	rm -rf .venv .aws-sam .nbc build .pytest_cache .mypy_cache .ruff_cache
