# LungPortal: `make run` sets everything up and starts the portal; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
export LUNGPORTAL_DATA_DIR ?= $(CURDIR)/var

.PHONY: install setup run worker test test-fast lint clean viewer bench

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

# Migrations (quiet) and the demo account (its password is printed once, when it is made).
setup: install
	@$(BIN)/python manage.py migrate --noinput --verbosity 0
	@$(BIN)/python manage.py demo_account

# bin/run migrates and makes the demo account itself, its output in $(LUNGPORTAL_DATA_DIR)/log/,
# and ends with the address and the demo login once the web server and the worker are ready.
run: install
	@PORT=$(PORT) HOST=$(HOST) bin/run

worker: install
	$(BIN)/celery -A lungportal worker -Q inference,default,integrations -c 1 --loglevel=INFO

test: install
	$(BIN)/pytest

# The inner loop: no Celery worker, browser or Orthanc (tests/lanes.py marks them).
test-fast: install
	$(BIN)/pytest -m "not worker and not browser and not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf var/test

# The slice viewer's bundle (static/viewer/, committed): only when viewer/ changes; needs Node 20.
viewer:
	cd viewer && npm ci && npm run build

# Speed, measured side by side in one run: writes docs/benchmarks.md (about half an hour on 2 cores;
# seeds its own data; PostgreSQL for the pages part: DATABASE_URL or postgres@127.0.0.1).
bench: install
	$(BIN)/python -m bench
