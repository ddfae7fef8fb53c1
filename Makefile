# checkpoint-sidecar — every command the README shows is a target here.
SHELL := /bin/bash
PY ?= .venv/bin/python
PYTEST_ARGS ?=
STACK := deploy/local/stack

.DEFAULT_GOAL := help
.PHONY: help venv lock run run-kafka deploy-sync tools test-rules stack-up stack-down stack-status connectors-apply capture-fixtures \
        lint test test-unit test-pure test-integration test-faults bench bench-venv-quix bench-fast-path bench-latency clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-18s %s\n", $$1, $$2}'

# Every package (the build backend and mypyc too) comes from requirements-dev.lock, checked
# against its hashes; then the project itself, editable, with nothing else fetched. The install
# compiles the hot-path modules setup.py lists (mypyc, 1-3 min) next to their sources; a change
# to one of them compiles again (SIDECAR_COMPILE=0 make venv: the pure-Python build).
COMPILED_SRC := $(shell grep -o '"sidecar/[a-z_/]*\.py"' setup.py | tr -d '"')

.venv/.deps: requirements-dev.lock pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q --require-hashes -r requirements-dev.lock
	touch $@

# The build chosen is remembered: `SIDECAR_COMPILE=0 make venv` after a compiled install (or the
# reverse) installs again.
SIDECAR_COMPILE ?= 1
export SIDECAR_COMPILE
.venv/.build-mode: FORCE
	@mkdir -p .venv; test "$$(cat $@ 2>/dev/null)" = "$(SIDECAR_COMPILE)" || echo "$(SIDECAR_COMPILE)" > $@

FORCE:

.venv/.installed: .venv/.deps .venv/.build-mode setup.py $(COMPILED_SRC)
	rm -f sidecar/*.so sidecar/*/*.so ./*__mypyc*.so
	.venv/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $@

venv: .venv/.installed ## create .venv and install the package with dev tools (from the hashed lock), compiled

LOCK_FLAGS := --generate-hashes --allow-unsafe --all-build-deps --strip-extras --no-emit-index-url --no-emit-find-links -q
lock: ## regenerate requirements.lock (image), requirements-dev.lock (venv, CI) and requirements-build.lock (image build tools) with hashes
	test -x .venv/bin/pip-compile || .venv/bin/pip install -q 'pip-tools>=7.4,<8'
	SIDECAR_COMPILE=0 .venv/bin/pip-compile $(LOCK_FLAGS) -o requirements.lock pyproject.toml
	SIDECAR_COMPILE=0 .venv/bin/pip-compile $(LOCK_FLAGS) --extra dev --extra embedded -o requirements-dev.lock pyproject.toml
	.venv/bin/pip-compile --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links -q \
	  -o requirements-build.lock requirements-build.in

run: venv ## the main job: embedded sidecar + example hooks on a throwaway PostgreSQL (Ctrl-C stops all it started)
	@deploy/local/run-demo embedded

# No stack-up prerequisite: run-demo starts what is missing itself, so Ctrl-C stops exactly that.
run-kafka: venv ## the same on the full stack in Kafka mode (Kafka Connect + Debezium; Ctrl-C stops all it started)
	@deploy/local/run-demo kafka

stack-up: ## start PostgreSQL, MariaDB, Kafka (KRaft), Kafka Connect + Debezium as local processes
	@$(STACK) up

stack-down: ## stop everything stack-up started
	@$(STACK) down

stack-status: ## show which stack components are up (also fine when they are down)
	@$(STACK) status || echo "(not everything is up: make stack-up starts the stack)"

connectors-apply: venv ## register/update the Debezium connectors in connectors/ on Kafka Connect
	@$(PY) -m sidecar connectors apply

capture-fixtures: venv ## re-record tests/fixtures/debezium from the running stack
	$(PY) scripts/capture_fixtures.py

lint: venv ## ruff + mypy --strict on sidecar/
	.venv/bin/ruff check sidecar tests scripts hooks bench setup.py
	.venv/bin/mypy

test-unit: venv ## unit + pipeline tests (no services)
	$(PY) -m pytest tests/unit tests/pipeline -q $(PYTEST_ARGS)

# The same tiers on the pure-Python sources: a copy without the compiled modules, first on the
# path (.venv/bin/pytest, not `python -m`, and --import-mode=append keep the checkout off it).
test-pure: venv ## unit + pipeline tests on the pure-Python build (what SIDECAR_COMPILE=0 installs)
	rm -rf .run/pure && mkdir -p .run/pure .ci-reports && cp -r sidecar .run/pure/
	find .run/pure -name '*.so' -delete
	SIDECAR_TEST_BUILD=pure PYTHONPATH=$(CURDIR)/.run/pure .venv/bin/pytest --import-mode=append -p no:cacheprovider \
	  tests/unit tests/pipeline -q --junitxml=.ci-reports/pure.xml $(PYTEST_ARGS)

test: venv tools stack-up ## all tests but the slow fault scenarios; brings the stack up
	promtool check rules deploy/prometheus/alerts.yaml
	cd deploy/prometheus && promtool test rules alerts.test.yaml
	SIDECAR_TEST_BUILD=compiled $(PY) -m pytest tests/unit tests/pipeline tests/integration -q --timeout=600 \
	  --junitxml=.ci-reports/test.xml $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-pure

test-faults: venv stack-up ## slow fault-injection scenarios on the real stack (crash/kill tests)
	SIDECAR_TEST_BUILD=compiled $(PY) -m pytest tests/faults -q --timeout=1200 --junitxml=.ci-reports/faults.xml $(PYTEST_ARGS)

bench: venv stack-up ## side-by-side benchmarks on the local stack (not part of make test): hook concurrency, example hooks vs a bare pool
	$(PY) bench/concurrency.py
	$(PY) bench/example_hooks.py

# Quix Streams for the side-by-side bench, in its own venv: every package pinned in
# bench/quix-requirements.txt, installed without resolving (--no-deps), never in .venv.
bench/.venv-quix/.installed: bench/quix-requirements.txt
	python3 -m venv bench/.venv-quix
	bench/.venv-quix/bin/pip install -q --no-deps -r bench/quix-requirements.txt
	touch $@

bench-venv-quix: bench/.venv-quix/.installed ## the pinned Quix Streams venv of bench-fast-path (bench/.venv-quix)

BENCH_ARGS ?=
bench-fast-path: venv bench-venv-quix stack-up ## no-op path: bare consumer vs Quix Streams vs the sidecar, 4 cells (BENCH_ARGS='--rounds 1 --messages 20000')
	$(PY) bench/no_op_path.py $(BENCH_ARGS)

bench-latency: venv stack-up ## commit→hook latency at 1,000 tx/s, Kafka and embedded mode, p50/p99 of 3 runs (BENCH_ARGS='--seconds 20')
	$(PY) bench/latency.py $(BENCH_ARGS)

deploy-sync: venv ## copy hooks/config into the kustomize base and Helm chart; regenerate Strimzi connectors and the dashboard
	cp hooks/*.py deploy/kubernetes/base/hooks/
	cp hooks/*.py deploy/helm/checkpoint-sidecar/files/hooks/
	cp deploy/kubernetes/base/config.yaml deploy/helm/checkpoint-sidecar/files/config.yaml
	$(PY) scripts/make_strimzi.py
	$(PY) scripts/make_dashboard.py

tools: ## build/install helm, kustomize (Go module proxy) and prometheus/promtool (Debian) for deploy/ checks
	deploy/tools/install

test-rules: tools ## promtool check + unit tests of the alert rules
	promtool check rules deploy/prometheus/alerts.yaml
	cd deploy/prometheus && promtool test rules alerts.test.yaml

clean: ## remove venv and caches (not the stack state: use deploy/local/stack reset)
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .ci-reports build .run/pure sidecar/*.so sidecar/*/*.so ./*__mypyc*.so
