# crypto-lambda: `make demo` runs the main job on the embedded sample, `make test` runs the tests.
# Both create .venv on first use (about 2 minutes: pyspark is built from its sdist once, then cached).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv demo test lint bench up clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/crypto-lambda demo

test: venv lint
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python bench/run_all.py

# The whole stack under one supervisor until Ctrl-C: replay exchange, broker, producer, Spark streaming consumer,
# Dagster webserver (127.0.0.1:3000) + daemon, live web page. Options: $(BIN)/crypto-lambda up --help.
up: venv
	$(BIN)/crypto-lambda up

clean:
	rm -rf .lambda_home .pytest_cache .ruff_cache
