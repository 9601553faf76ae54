# One entry point for people and CI. `make test` and `make run` work on a fresh machine
# with only Python 3.11 and pip: they create .venv and install the project into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run shell test test-slow test-ts lint typecheck bench clean perf-peers perf web web-test screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Arguments for the server: make run ARGS="--http 127.0.0.1:9000 --data-dir /tmp/sf"
run: $(STAMP)
	$(BIN)/spitfire-server $(ARGS)

# A shell with .venv activated: spitfire-server and spitfire on its PATH (exit to leave).
shell: $(STAMP)
	@echo "spitfire-server and spitfire are on PATH in this shell (.venv activated); exit to leave"
	@. $(BIN)/activate && exec $${SHELL:-/bin/sh} -i

test: $(STAMP) web-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict wal index protocol
	$(BIN)/python -m pytest -m "not slow" -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc
	$(MAKE) test-ts

# The TypeScript SDK (needs node >= 20 and npm): install from the lockfile, build, lint, then its
# tests (golden vectors, type tests, and live-server tests that use this .venv's spitfire-server),
# under Node and again under Bun (the npm package `bun`, a devDependency).
test-ts: $(STAMP)
	cd sdks/typescript && npm ci --no-audit --no-fund && npm run build && npm run lint && npm test && npm run test:bun

# The dashboard (dashboard/web): npm ci, type-check, Vitest; in CI (CI=true) also a rebuild that
# must give the committed dashboard/static byte for byte. The browser tests run with pytest
# (tests/dashboard/test_browser.py, after this has installed playwright-core).
WEB := dashboard/web
web-test:
	@command -v npm >/dev/null || { [ -z "$$CI" ] && echo "npm missing: dashboard tests skipped"; } || { echo "npm missing"; exit 1; }
	@if command -v npm >/dev/null; then cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error \
	  && npm run --silent typecheck && npm test --silent; fi
	@if [ -n "$$CI" ]; then cd $(WEB) && npm run --silent build >/dev/null && cd - >/dev/null \
	  && { test -z "$$(git status --porcelain -- dashboard/static)" || { git status --porcelain -- dashboard/static; \
	  git --no-pager diff --stat -- dashboard/static; \
	  echo "dashboard/static differs from a rebuild of dashboard/web: run make web and commit it"; exit 1; }; }; fi

# Rebuild dashboard/static from dashboard/web (commit the result).
web:
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error && npm run build

# docs/screenshots/: every page in both themes, from a seeded server with traffic.
screenshots: $(STAMP)
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	SPITFIRE_SCREENSHOTS=1 $(BIN)/python -m pytest -q -p no:randomly tests/dashboard/test_browser.py -k screenshots

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict wal index protocol

bench: $(STAMP)
	$(BIN)/python -m perf engine

# Continuous profiling: 5,000 enqueues/s for 20 s with py-spy on the server; writes
# flamegraphs/watch-<ts>.svg and .json, fails when enqueue p99 is over 5 ms.
perf: $(STAMP)
	$(BIN)/python -m perf watch

# The peer job queues of the comparison in their own venv, plus redis-server (apt, as root).
PEERS_VENV := .venv/peers
perf-peers:
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	echo '*' > $(PEERS_VENV)/.gitignore
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["peers"]))' > $(PEERS_VENV)/peers.txt
	$(PEERS_VENV)/bin/python -m pip install --quiet -r $(PEERS_VENV)/peers.txt
	command -v redis-server >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && apt-get install -y -qq redis-server; } || echo "redis-server missing: redis peers will be skipped"
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && apt-get install -y -qq postgresql; } || echo "PostgreSQL missing: pgqueuer and procrastinate will be skipped"
	command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && apt-get install -y -qq nodejs npm; } || echo "node/npm missing: bullmq will be skipped"
	{ command -v npm >/dev/null && cd perf/peers/node && npm ci --no-audit --no-fund --loglevel=error; } \
	  || echo "npm ci in perf/peers/node failed: bullmq will be skipped"
	command -v sidekiq >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && apt-get install -y -qq ruby ruby-sidekiq; } || echo "ruby-sidekiq missing: sidekiq will be skipped"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	rm -rf sdks/typescript/node_modules sdks/typescript/dist examples/typescript/node_modules examples/typescript/dist
