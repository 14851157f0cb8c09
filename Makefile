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

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

migrate: setup
	mkdir -p var
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py ensure_demo_user
	$(PY) manage.py runstack

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(PY) -m pytest

bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) var .pytest_cache

.PHONY: screenshots
# Pictures of the console for docs/, from the real stack in Debian's Chromium.
screenshots: setup
	$(PY) -m tests.browser.screenshots
