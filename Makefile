# One command to set up and run the tests, one for the demo. Everything lives in .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test lint bench demo clean

$(BIN)/dlrm-nb: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/dlrm-nb

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/bench_prepare.py

demo: setup
	$(BIN)/dlrm-nb synth results/demo-raw --rows-per-day 20000 --test-day-rows 100000 --seed 7
	$(BIN)/dlrm-nb prepare results/demo-raw results/demo-prepared --max-ind-range 40000000

clean:
	rm -rf $(VENV) .pytest_cache
