# mfr-analysis: `make report` then `make test` on a fresh machine. `make help` lists targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
INSTALLED_DEV := $(VENV)/.installed-dev
KERNEL := $(VENV)/share/jupyter/kernels/mfr-analysis/kernel.json
SAMPLE_LOGS := data/sample/logs
SAMPLE_CLIENTS := 600
SAMPLE_SEED := 20261125

.PHONY: help report test lint bench sample lab clean-reports

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(INSTALLED_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@ $(INSTALLED)

$(KERNEL): | $(INSTALLED)
	$(BIN)/python -m ipykernel install --sys-prefix --name mfr-analysis \
		--display-name "Python (mfr-analysis)" > /dev/null

report: $(INSTALLED) $(KERNEL) ## set up .venv and write reports/index.html from data/sample
	$(BIN)/mfr-analysis report $(SAMPLE_LOGS) --out reports --by audience_group
	@echo "open reports/index.html"

test: $(INSTALLED_DEV) $(KERNEL) ## set up .venv with the dev extra and run every test
	$(BIN)/python -m pytest

lint: $(INSTALLED_DEV) ## ruff over the package, tests and benchmarks
	$(BIN)/ruff check src tests benchmarks

bench: $(INSTALLED_DEV) $(KERNEL) ## one table of every performance goal (about 40 min; BENCH_ARGS=--quick)
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

sample: $(INSTALLED) ## regenerate data/sample from the simulator (deterministic)
	mkdir -p $(SAMPLE_LOGS) data/sample/truth
	$(BIN)/mfr-analysis simulate --clients $(SAMPLE_CLIENTS) --seed $(SAMPLE_SEED) \
		--out data/sample/truth/sessions_export.csv
	mv data/sample/truth/sessions_export.csv $(SAMPLE_LOGS)/sessions_export.csv

lab: $(INSTALLED) $(KERNEL) ## open JupyterLab on the notebooks (reports/ holds the report ones)
	$(BIN)/jupyter lab notebooks/explore.ipynb

clean-reports: ## remove generated reports
	find reports -mindepth 1 ! -name .gitkeep -delete
