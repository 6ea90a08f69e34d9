# One command to set up and run the tests, one for the demo. Everything lives in .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# nbstripout's options, the same in .pre-commit-config.yaml: cell ids are the cells' names and tags
# (the papermill ``parameters`` tag) stay; what Jupyter, papermill and widgets add on a run goes.
NBSTRIPOUT_ARGS := --keep-id --extra-keys "metadata.papermill cell.metadata.papermill \
	metadata.language_info.codemirror_mode metadata.language_info.file_extension \
	metadata.language_info.mimetype metadata.language_info.nbconvert_exporter \
	metadata.language_info.pygments_lexer metadata.language_info.version"

.PHONY: setup test test-fast lint typecheck bench demo clean clean-notebooks

$(BIN)/dlrm-nb: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/dlrm-nb

# The full run (what .ci/run does): lint, format and type checks, then every test.
test: lint typecheck
	$(BIN)/python -m pytest -q

# The quick tier: the same checks, then the tests not marked slow.
test-fast: lint typecheck
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/bench_prepare.py

# The embedded demo: every notebook through papermill into results/<run-id>/; prints where the report is.
demo: setup
	$(BIN)/dlrm-nb run params/demo.yaml

# Outputs and execution counts out of the committed notebooks (a clean notebook stays as it is).
clean-notebooks: setup
	$(BIN)/nbstripout $(NBSTRIPOUT_ARGS) notebooks/*.ipynb

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
