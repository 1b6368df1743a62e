# make demo  - set up .venv and run the offline demo to results/report.html
# make run   - the real dataset (needs internet): results/report.html
# make test  - set up .venv, run the linters and the test suite
# make rulegraph - redraw docs/rulegraph.{dot,svg} after adding or rewiring a rule (needs Graphviz)
# make mutation - mutation testing of the pure-Python core with its fast unit tests (not in CI)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup demo run test lint rulegraph mutation
setup: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-cloud.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES) results/report.html --configfile config/demo.yaml

run: setup
	$(BIN)/snakemake --cores $(CORES) results/report.html

lint: setup
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

rulegraph: setup
	$(BIN)/python docs/rulegraph.py

# From scratch each time: mutmut reruns only the functions whose code changed, so a new test would
# not be tried against the mutants that survived it before. What it mutates and with which tests:
# [tool.mutmut] in pyproject.toml; the survivors left alone: tests/MUTANTS.md.
mutation: setup
	rm -rf mutants
	nice -n 10 $(BIN)/mutmut run --max-children $(CORES)
	$(BIN)/python tests/mutation_score.py
