# koc: `make demo` to try it, `make test` to check it. Everything installs into .venv.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_PORT ?= 8000
export KOC_PUBLIC_URL ?= http://127.0.0.1:$(DEMO_PORT)
# The dashboard's charts: Apache ECharts from the npm registry, copied into the panel's static
# folder at install time so pages load it from 'self' (no CDN at run time). Not committed.
ECHARTS_VERSION := 5.6.0
ECHARTS := koc/admin/static/vendor/echarts.min.js

.PHONY: help install lock demo test test-dates fuzz lint bench chromium translations clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# Exact versions with hashes from requirements.lock first; then the package itself, which also
# brings in any dependency added to pyproject.toml since the last `make lock`.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(ECHARTS):
	@command -v npm >/dev/null || { echo "npm is needed once to fetch ECharts (apt-get install -y npm)"; exit 1; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd "$$tmp" && npm pack --silent echarts@$(ECHARTS_VERSION) >/dev/null) && \
	  tar -xzf "$$tmp"/echarts-$(ECHARTS_VERSION).tgz -C "$$tmp" package/dist/echarts.min.js package/LICENSE && \
	  mkdir -p $(@D) && cp "$$tmp"/package/dist/echarts.min.js $@ && cp "$$tmp"/package/LICENSE $(@D)/ECHARTS-LICENSE

install: $(STAMP) $(ECHARTS) ## install the service and its test tools into .venv (exact versions: requirements.lock)

lock: ## refresh requirements.lock (exact versions + hashes) from pyproject.toml's ranges, with uv
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	  --upgrade --quiet -o requirements.lock

demo: install ## migrate an SQLite database, load demo data, serve API + admin panel with a worker
	$(BIN)/koc db upgrade
	$(BIN)/koc demo load
	@echo "koc is at http://127.0.0.1:$(DEMO_PORT)/admin  (API docs: /api/v1/docs); Ctrl-C stops"
	@trap 'kill 0' EXIT INT TERM; \
	  $(BIN)/koc worker --concurrency 1 & \
	  $(BIN)/koc serve --port $(DEMO_PORT)

chromium: ## the browser the admin-panel tests drive, CJK fonts for its screenshots, wrk for bench (Debian packages; never a download)
	@missing=""; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  [ -d /usr/share/fonts/opentype/noto ] || missing="$$missing fonts-noto-cjk"; \
	  command -v wrk >/dev/null || missing="$$missing wrk"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    else echo "missing:$$missing (sudo apt-get install -y$$missing)"; fi; fi

# Test files are shared out among this many pytest processes (pytest-xdist), a whole file to one.
TEST_WORKERS ?= 2

test: install chromium ## run the whole test suite
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# The bounded pass in `make test` uses seed 8 and 5 cases per operation and caller; this one goes
# further, from a new seed each time unless given one (the seed is printed, to replay a failure).
FUZZ_SEED ?= $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
FUZZ_EXAMPLES ?= 100

fuzz: install ## schemathesis over the OpenAPI document, 4 callers x SQLite/PostgreSQL (FUZZ_SEED, FUZZ_EXAMPLES)
	@echo "fuzz: FUZZ_SEED=$(FUZZ_SEED) FUZZ_EXAMPLES=$(FUZZ_EXAMPLES)"
	FUZZ_SEED=$(FUZZ_SEED) FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -m fuzz -p no:cacheprovider --timeout 3600 tests/fuzz

# The instants the tests marked `clock` run at: Monday to Sunday of one week (Monday just after
# the week turns over in UTC, Sunday just before), a month end, the UTC year end, the year end in
# Shanghai (UTC+8, 16:00 UTC), and a leap day.
TEST_DATES ?= 2027-03-01T00:20:00Z,2027-03-02T10:00:00+08:00,2027-03-03T10:00:00+08:00,\
  2027-03-04T10:00:00+08:00,2027-03-05T10:00:00+08:00,2027-03-06T10:00:00+08:00,\
  2027-03-07T23:40:00Z,2027-04-30T23:30:00Z,2026-12-31T23:30:00Z,2026-12-31T23:50:00+08:00,\
  2028-02-29T12:00:00Z

test-dates: install ## run the tests marked clock once at each of TEST_DATES, in one pytest process
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m clock --clock='$(TEST_DATES)'

lint: install ## ruff, the layer contract (import-linter) and types (mypy)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

# Each benchmark prints its figures and a `RATIO ...` line; the ratios are gathered at the end.
BENCHES := tier_recalc tier_engine tier_scaleout submissions_throughput kits_download_urls \
  kits_upload_throughput ops_metrics admin_lists users_import invitation_campaign

bench: install chromium ## benchmarks (PostgreSQL, SeaweedFS, Redis, wrk): figures and ratios against same-run baselines
	@log=$$(mktemp) && trap 'rm -f "$$log"' EXIT && set -o pipefail && \
	  for name in $(BENCHES); do \
	    echo "== bench.$$name" && $(BIN)/python -m bench.$$name | tee -a "$$log" || exit 1; \
	  done && echo && echo "ratios (koc / baseline unless the line says otherwise):" && \
	  grep '^RATIO' "$$log" | sed 's/^RATIO /  /'

translations: install ## extract admin-panel strings and update the zh-CN/en catalogs (then translate, re-run)
	$(BIN)/pybabel extract -F babel.cfg -k _l -o koc/translations/messages.pot .
	$(BIN)/pybabel update -i koc/translations/messages.pot -d koc/translations
	$(BIN)/pybabel compile -d koc/translations

clean: ## remove the virtualenv and local state
	rm -rf $(VENV) instance .pytest_cache
