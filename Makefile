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

# The embedded demo: every notebook through papermill into results/<run-id>/; prints where the report is.
demo: setup
	$(BIN)/dlrm-nb run params/demo.yaml

clean:
	rm -rf $(VENV) .pytest_cache
