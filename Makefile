# Attest: two commands. `make run` serves the demo on http://127.0.0.1:5000; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FLASK  := $(BIN)/flask --app app

.PHONY: run test lint install clean-db

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Attest needs Python 3.11 or newer (found %d.%d); set PYTHON=/path/to/python3.11" % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(FLASK) db upgrade
	$(FLASK) demo load
	@echo "Attest: http://127.0.0.1:5000 (demo logins above)"
	ATTEST_SESSION_COOKIE_SECURE=$${ATTEST_SESSION_COOKIE_SECURE:-0} $(FLASK) run --host 127.0.0.1 --port 5000

test: $(VENV)/.installed
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m core.testing.run_suites

lint: $(VENV)/.installed
	$(BIN)/ruff check .

clean-db:
	rm -f instance/attest.db instance/attest.db-wal instance/attest.db-shm
