# Two commands: `make run` serves the app, `make test` runs every test. Both set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Everything make starts listens on 127.0.0.1 only, so the built-in SECRET_KEY may be used
# (settings refuse it otherwise unless DEBUG is on; see docs/deploy.md).
export LISTEN_LOOPBACK_ONLY ?= 1

.PHONY: run test lint bench setup migrate clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .  # the `jobs` terminal client (basic/cli)
	touch $(STAMP)

# var/ is private (0700): the database holds password hashes and API tokens (settings keep it so).
migrate: setup
	mkdir -p -m 700 var
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py ensure_demo_user
	$(PY) manage.py runstack

# ruff, then the import contracts in pyproject.toml (the layers' direction; docs/design.md, "Layers").
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Everything on SQLite (and test_two_machines on PostgreSQL), then again on PostgreSQL what its
# database decides: the REST layer, unit tests of SQL, the pipeline under load, the schedules'
# race for the same due row and the API contract as deployed (README: Tests). Without DATABASE_URL
# a private PostgreSQL is started. Not again on PostgreSQL: the unit tests of core, realtime, cli
# and the layers (no database), and the integration tests of a kind's lifecycle, Redis and worker
# outages, socket storms, hostile pages and runstack's supervision, which the database does not
# decide; the chaos soak (test_chaos_soak, first pass) runs its whole stack on PostgreSQL,
# restarting it among its faults.
PG_TESTS := tests/api tests/unit/jobs tests/unit/students tests/unit/accounts tests/unit/api \
	tests/integration/test_pipeline.py tests/integration/test_api_contract.py \
	tests/integration/test_schedules_race.py

test: setup lint
	$(PY) -m pytest
	TEST_DATABASE=postgres $(PY) -m pytest $(PG_TESTS)

# Every benchmark; writes docs/benchmarks.md and its charts. E.g. BENCH_ARGS='--sizes 100,1000'.
bench: setup
	$(PY) -m bench.run_all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache

.PHONY: screenshots
# Pictures of the console for docs/, from the real stack in Debian's Chromium.
screenshots: setup
	$(PY) -m tests.browser.screenshots
