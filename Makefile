# Quick start: `make run` (set up and run the main job) and `make test` (set up and run every test).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
SHARED_SCENARIOS := ../shared/acceptance/decisions.yaml
SCENARIOS := $(if $(wildcard $(SHARED_SCENARIOS)),$(SHARED_SCENARIOS),tests/acceptance/decisions.yaml)
DEMO_DIR ?= .demo
# The local demo serves plain http, so its console cookie must not be Secure: Chromium would take
# a Secure cookie from http://127.0.0.1 or http://localhost anyway, but Safari and any other host
# name (a LAN address, a VM's forwarded port) drop it and the login never sticks. Production,
# behind TLS, keeps the default (GOVERNANCE_CONSOLE_SECURE_COOKIE=1: a Secure __Host- cookie).
DEMO := GOVERNANCE_DATA_DIR=$(DEMO_DIR) GOVERNANCE_DATABASE_URL= GOVERNANCE_CONSOLE_SECURE_COOKIE=0 $(BIN)/govern

.PHONY: run serve explain demo test bench check lint clean screenshots console-url

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

PORT ?= 8000

## run: validate the policies, pass the acceptance scenarios, seed the demo (once) into $(DEMO_DIR), use it, then serve the API on it
run: $(VENV)/.installed-run
	$(BIN)/govern policy validate
	$(BIN)/govern check --scenarios $(SCENARIOS)
	@$(MAKE) --no-print-directory demo
	@$(MAKE) --no-print-directory console-url
	$(DEMO) serve --port $(PORT) --workers 2

## serve: the HTTP API and the console over the demo deployment (make demo first)
serve: $(VENV)/.installed-run
	@$(MAKE) --no-print-directory console-url
	$(DEMO) serve --port $(PORT) --workers 2

console-url:
	@echo "console: http://127.0.0.1:$(PORT)/console — log in as steward@genebody.example with the password in $(DEMO_DIR)/demo-credentials.txt"
	@echo "         (show it with: sed -n 's/^password (every demo user): //p' $(DEMO_DIR)/demo-credentials.txt)"

## demo: seed the demo deployment into $(DEMO_DIR) (once), list the steward's queue, decide, verify the audit chain
demo: $(VENV)/.installed-run
	@if [ -e $(DEMO_DIR)/governance.db ]; then echo "demo already seeded in $(DEMO_DIR) (rm -r $(DEMO_DIR) to start again)"; else $(DEMO) demo; fi
	$(DEMO) --as steward@genebody.example request list --state pending
	$(DEMO) check --user alice@ust.hk --resource genebody:train40/subject01/img_0001.jpg --action read --purpose research/non-commercial/academic
	-$(DEMO) check --user eve.hacker@gmail.com --resource genebody:train40/subject01/img_0001.jpg --action read --purpose research/non-commercial/academic
	$(DEMO) audit verify

## explain: every acceptance scenario explained for people (clauses, provenance, remedies)
explain: $(VENV)/.installed-run
	$(BIN)/govern explain --scenarios $(SCENARIOS)

## test: the whole suite (unit, property, acceptance, CLI, the console in Chromium)
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

## check: the shared acceptance scenarios only
check: $(VENV)/.installed-run
	$(BIN)/govern check --scenarios $(SCENARIOS)

## bench: decision, stored-state, HTTP API and Crypt4GH benchmarks (figures are quoted in README.md)
bench: $(VENV)/.installed-test
	$(BIN)/python bench/decide.py
	$(BIN)/python bench/state.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/crypto.py

## screenshots: photograph the console's pages (a fresh demo, Debian's Chromium) into docs/screenshots/
screenshots: $(VENV)/.installed-test
	$(BIN)/python -m tests.browser.screenshots docs/screenshots

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis $(DEMO_DIR)
