# Salon: `make run` starts a server on localhost, `make test` runs the whole suite.
VENV ?= .venv
PYTHON ?= python3
CONFIG ?= var/salon.toml
BIN = $(VENV)/bin

.PHONY: run test lint format bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.test-installed: pyproject.toml $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/salon init --config $(CONFIG)
	@echo
	@echo "Salon is starting. In another terminal, create an account:"
	@echo "    $(BIN)/salon adduser --config $(CONFIG) alice@localhost"
	@echo "then log in with any XMPP client as alice@localhost (server 127.0.0.1, port 5222)."
	@echo
	$(BIN)/salon serve --config $(CONFIG)

test: $(BIN)/.test-installed
	$(BIN)/python -m pytest -q

lint: $(BIN)/.test-installed
	$(BIN)/ruff check salon tests
	$(BIN)/ruff format --check salon tests

format: $(BIN)/.test-installed
	$(BIN)/ruff format salon tests
	$(BIN)/ruff check --fix salon tests

clean:
	rm -rf $(VENV) var .pytest_cache
