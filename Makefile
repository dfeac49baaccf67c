# Quick start: `make run` (set up and run the main job) and `make test` (set up and run every test).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
SHARED_SCENARIOS := ../shared/acceptance/decisions.yaml
SCENARIOS := $(if $(wildcard $(SHARED_SCENARIOS)),$(SHARED_SCENARIOS),tests/acceptance/decisions.yaml)

.PHONY: run test bench check lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

## run: validate the policies, then explain every acceptance scenario in readable form
run: $(VENV)/.installed-run
	$(BIN)/govern policy validate
	$(BIN)/govern explain --scenarios $(SCENARIOS)
	@echo
	$(BIN)/govern check --scenarios $(SCENARIOS)

## test: the whole suite (unit, property, acceptance, CLI)
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

## check: the shared acceptance scenarios only
check: $(VENV)/.installed-run
	$(BIN)/govern check --scenarios $(SCENARIOS)

## bench: decision benchmark (figures are quoted in README.md)
bench: $(VENV)/.installed-test
	$(BIN)/python bench/decide.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
