# cookiesync — the newcomer's commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test test-python test-node venv chromium extension bench probe docs clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)

## Start the service on its embedded defaults (SQLite, simulated Unipile, emails kept in the outbox).
run: venv
	$(BIN)/cookiesync serve

## Install what the tests need (Python packages, Debian's chromium) and run them all.
test: venv chromium
	$(MAKE) --no-print-directory test-node
	$(MAKE) --no-print-directory test-python

test-python:
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-node:
	@if command -v node >/dev/null; then node --test extension/test/; \
	elif [ "$$CI" = "true" ]; then echo "node is required under CI" >&2; exit 1; \
	else echo "node not found: skipping the extension's unit tests"; fi

# Debian's chromium from apt (never a browser download from a test tool).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium missing and apt-get unavailable: browser tests will skip (they fail under CI=true)"; fi

## Zip the extension for the Chrome Web Store (version from manifest.json).
extension:
	sh extension/package.sh

## Benchmarks (see README): prints a table of ratios measured side by side.
bench: venv
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks.run

## The outside probe of #18 replayed on a fresh local instance: one row a step, PASS or MISS.
probe: venv
	$(BIN)/python -m benchmarks.probe

## The README's settings table and deploy/cookiesync.env.example, from the Settings fields' descriptions.
docs: venv
	$(BIN)/cookiesync settings-docs

clean:
	rm -rf $(VENV) data dist artifacts
