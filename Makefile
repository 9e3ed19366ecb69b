# Salon: `make run` starts a server on localhost, `make test` runs the whole suite.
VENV ?= .venv
PYTHON ?= python3
CONFIG ?= var/salon.toml
BIN = $(VENV)/bin
# The web chat page (/chat) serves Converse.js from npm, pinned; keep salon/net/chat_page.py in step.
CONVERSE_VERSION ?= 14.0.0
WEB_CLIENT = var/web/.converse-$(CONVERSE_VERSION)

.PHONY: run test lint format bench fuzz clean web-client
# `make fuzz`: 7 fuzz tests x 7,500 examples x 20 inputs each = 1.05 million generated inputs.
FUZZ_EXAMPLES ?= 7500
FUZZ_BATCH ?= 20

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.test-installed: pyproject.toml $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Converse.js for /chat; without npm (or the registry) Salon runs and the page says what is missing.
$(WEB_CLIENT):
	@mkdir -p var/web
	@if npm install --prefix var/web --no-save --no-audit --no-fund --ignore-scripts --omit=dev \
		--loglevel=error converse.js@$(CONVERSE_VERSION); then touch $@; \
	else echo "warning: could not install Converse.js with npm; /chat will say so" >&2; fi

web-client: $(WEB_CLIENT)

run: $(BIN)/.installed $(WEB_CLIENT)
	$(BIN)/salon init --config $(CONFIG)
	@echo
	@echo "Salon is starting. In another terminal, create an account:"
	@echo "    $(BIN)/salon adduser --config $(CONFIG) alice@localhost"
	@echo "then log in with any XMPP client as alice@localhost (server 127.0.0.1, port 5222),"
	@echo "or in a browser at https://localhost:5281/chat/ (accept the self-signed certificate)."
	@echo
	$(BIN)/salon serve --config $(CONFIG)

test: $(BIN)/.test-installed $(WEB_CLIENT)
	$(BIN)/python -m pytest -q

lint: $(BIN)/.test-installed
	$(BIN)/ruff check salon tests
	$(BIN)/ruff format --check salon tests
	$(BIN)/mypy --strict salon

format: $(BIN)/.test-installed
	$(BIN)/ruff format salon tests
	$(BIN)/ruff check --fix salon tests

fuzz: $(BIN)/.test-installed
	SALON_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) SALON_FUZZ_BATCH=$(FUZZ_BATCH) $(BIN)/python -m pytest -q --timeout=0 tests/fuzz

bench: $(BIN)/.installed
	$(BIN)/python -m bench run --server all --scenario all

clean:
	rm -rf $(VENV) var .pytest_cache
