# cookiesync — the newcomer's commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Installs come from uv.lock, exactly: uv (pinned, bootstrapped into .tools/ with the machine's pip) syncs
# .venv to the lock's versions and hashes. --locked never re-resolves and stops when pyproject.toml changed
# without `make lock`; --inexact keeps what another target
# added (make run after make test keeps the test tools). `make lock` re-resolves after a pyproject change.
UV_VERSION := 0.13.9
UV     := .tools/uv-$(UV_VERSION)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
SYNC   := $(UV) sync --locked --inexact --quiet

.PHONY: run test test-python test-node extension-lint venv venv-run lock chromium firefox wrk extension bench bench-retention probe docs clean

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target .tools/uv-$(UV_VERSION) uv==$(UV_VERSION)

# What running needs, nothing more.
venv-run: $(UV)
	$(SYNC)

# What the tests need on top.
venv: $(UV)
	$(SYNC) --extra test

## Re-resolve uv.lock after changing pyproject.toml's dependencies (commit both).
lock: $(UV)
	$(UV) lock

## Start the service on its embedded defaults (SQLite, simulated Unipile, emails kept in the outbox).
run: venv-run
	$(BIN)/cookiesync serve

## Install what the tests need (Python packages, Debian's chromium and firefox-esr) and run them all.
test: venv chromium firefox
	$(MAKE) --no-print-directory test-node
	$(MAKE) --no-print-directory test-python

# Tests run in TEST_WORKERS processes (pytest-xdist): most of a test's time is spent waiting on its
# servers (sweeps, retries, SIGKILLed instances), so three workers on two cores beat one.
TEST_WORKERS ?= 3
test-python:
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --durations=15

# The extension's unit tests (both browsers' manifests), then Mozilla's linter on the Firefox package.
test-node:
	@if command -v node >/dev/null; then $(MAKE) --no-print-directory extension-lint; \
	elif [ "$$CI" = "true" ]; then echo "node is required under CI" >&2; exit 1; \
	else echo "node not found: skipping the extension's unit tests"; fi

# web-ext from extension/package-lock.json, exactly (npm ci); re-installed only when the lock changes.
# --ignore-scripts: the linter needs no install-time scripts, so none run.
extension/node_modules/.package-lock.json: extension/package-lock.json
	cd extension && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

extension-lint: extension/node_modules/.package-lock.json
	node --test extension/test/
	rm -rf dist/lint
	node extension/tools/build.mjs --out dist/lint --target firefox
	node extension/tools/build.mjs --out dist/lint --target firefox --brand extension/test/fixtures/brand-example.json
	for zip in dist/lint/*-firefox-*.zip; do \
		extension/node_modules/.bin/web-ext lint --no-config-discovery --warnings-as-errors --source-dir $$zip || exit 1; done

# A Debian package from apt, when its program is missing (never a browser download from a test tool):
# $(call apt_install,PROGRAM,PACKAGE,SHELL WHEN NEITHER IS THERE).
define apt_install
	@if command -v $(1) >/dev/null; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's $(2) with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	else $(3); fi
endef

# Debian's chromium, for the extension's and the console's browser tests.
chromium:
	$(call apt_install,/usr/bin/chromium,chromium,echo "chromium missing and apt-get unavailable: browser tests will skip (they fail under CI=true)")

# Debian's firefox-esr, for the Firefox package's end-to-end test (driven over Marionette).
firefox:
	$(call apt_install,/usr/bin/firefox-esr,firefox-esr,echo "firefox-esr missing and apt-get unavailable: the Firefox test will skip (it fails under CI=true)")

# Debian's wrk for the benchmarks' load.
wrk:
	$(call apt_install,wrk,wrk,echo "wrk missing and apt-get unavailable: install it to run make bench" >&2; exit 1)

## Zip the extension for the Chrome Web Store (also Edge) and for Firefox, from extension/brand.json or
## BRAND=path (see extension/README.md); the version comes from extension/manifest.json.
BRAND ?= extension/brand.json
extension:
	node extension/tools/build.mjs --brand $(BRAND)

## Benchmarks (see README): prints a table of ratios measured side by side.
bench: $(UV) wrk
	$(SYNC) --extra test --extra bench
	$(BIN)/python -m benchmarks.run

## The retention figures at full size (10M old rows pruned beside the ingest; 1M links over 30 days): long.
bench-retention: $(UV) wrk
	$(SYNC) --extra test --extra bench
	$(BIN)/python -m benchmarks.run --only prune,retention

## The outside probe of #18 replayed on a fresh local instance: one row a step, PASS or MISS.
probe: venv
	$(BIN)/python -m benchmarks.probe

## The README's settings table and deploy/cookiesync.env.example, from the Settings fields' descriptions.
docs: venv
	$(BIN)/cookiesync settings-docs

clean:
	rm -rf $(VENV) .tools data dist artifacts
