# LungPortal: `make run` sets everything up and starts the portal; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
export LUNGPORTAL_DATA_DIR ?= $(CURDIR)/var

.PHONY: install setup run worker test lint clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

setup: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo_account

run: setup
	PORT=$(PORT) HOST=$(HOST) bin/run

worker: install
	$(BIN)/celery -A lungportal worker -Q inference,default -c 1 --loglevel=INFO

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf var/test
