# Two commands: `make run` serves the app, `make test` runs every test. Both set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Everything make starts listens on 127.0.0.1 only, so the built-in SECRET_KEY may be used
# (settings refuse it otherwise unless DEBUG is on; see docs/deploy.md).
export LISTEN_LOOPBACK_ONLY ?= 1

.PHONY: run test lint bench soak setup migrate clean

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
# database decides: the REST layer, unit tests of SQL, the pipeline under load, the API contract as
# deployed, beat's database scheduler, the race for a per-user cap and pages with a NUL (which
# PostgreSQL refuses), and the core's database connections: kept, prepared, on kept threads
# (README: Tests). Without DATABASE_URL a private PostgreSQL is started. Not
# again on PostgreSQL: the other unit tests of core, realtime, cli and the layers (no database), and the
# integration tests of a kind's lifecycle, worker and Redis outages, socket storms and runstack's
# supervision, which the database does not decide; the chaos soak (test_chaos_soak, first pass)
# runs its whole stack on PostgreSQL and restarts it among its faults.
PG_TESTS := tests/api tests/unit/jobs tests/unit/students tests/unit/accounts tests/unit/api \
	tests/unit/core/test_postgres_kept.py tests/unit/core/test_prepared_query.py tests/unit/core/test_kept_threads.py \
	tests/integration/test_pipeline.py tests/integration/test_api_contract.py \
	tests/integration/test_schedules.py tests/integration/test_schedules_race.py \
	tests/integration/test_hostile_pages.py \
	--deselect tests/integration/test_pipeline.py::test_the_naive_async_to_sync_helper_fails_the_same_load \
	--deselect tests/integration/test_schedules.py::test_runstack_starts_one_beat_beside_the_workers_and_stops_it_on_ctrl_c

test: setup lint
	$(PY) -m pytest
	TEST_DATABASE=postgres $(PY) -m pytest $(PG_TESTS)

# Every benchmark; writes docs/benchmarks.md and its charts. E.g. BENCH_ARGS='--sizes 100,1000'.
bench: setup
	$(PY) -m bench.run_all $(BENCH_ARGS)

# The chaos soak (docs/soak.md): mixed load on PostgreSQL, Redis Sentinel, two web processes behind
# nginx and both worker pools while faults are injected at random; checks the invariants and prints
# what survived. Default 10 minutes, 1,000 sockets; e.g. SOAK_ARGS='--seconds 1800 --seed 7'.
soak: setup
	$(PY) -m tests.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache

.PHONY: screenshots
# Pictures of the console for docs/, from the real stack in Debian's Chromium.
screenshots: setup
	$(PY) -m tests.browser.screenshots
