# CallFS for Django: `make run` serves on http://127.0.0.1:8000, `make test` runs everything.
# The distribution's own CPython when it is 3.11 or newer: Debian's optimised build ran small
# requests on less CPU than pyenv's plain source build of 3.11 on the same machine (measured:
# BENCHMARKS.md). Otherwise python3 from PATH; any Python >= 3.11 works:
# `make PYTHON=python3.12 ...`. An existing .venv is kept as it is.
PYTHON ?= $(shell /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(VENV)/.installed: requirements.txt client/requirements.txt client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
	  { echo "$(PYTHON) has no venv module (Debian: apt-get install python3-venv); using python3"; \
	    rm -rf $(VENV); python3 -m venv $(VENV); }
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q -r client/requirements.txt -e ./client  # the callfs client, CLI, fsspec
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py dev_setup
	@echo "Serving on http://127.0.0.1:8000 (Ctrl-C stops)"
	$(BIN)/gunicorn -c gunicorn.conf.py

test: $(VENV)/.dev-installed
	bash scripts/test.sh

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf var .pytest_cache .ruff_cache .import_linter_cache

bench: $(VENV)/.installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)
