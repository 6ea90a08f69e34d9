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

# The notebooks' kernel: this .venv's Python, as a named kernelspec inside .venv (found by the
# jupyter of .venv; nothing is written outside the project).
KERNEL := dlrm-nb
KERNEL_DISPLAY_NAME := DLRM workbook (.venv)
LAB_PORT ?= 8888
# Jupyter refuses to run as root without saying so (containers, these machines)
LAB_AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: setup test test-fast lint typecheck bench demo lab clean clean-notebooks

$(BIN)/dlrm-nb: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "$(KERNEL_DISPLAY_NAME)"
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

# JupyterLab on this machine only (127.0.0.1), on the project folder, opening the start page; the
# notebooks run in the $(KERNEL) kernel. Another port: make lab LAB_PORT=8899.
lab: setup
	$(BIN)/jupyter lab --ip 127.0.0.1 --port $(LAB_PORT) --ServerApp.root_dir=. \
		--MappingKernelManager.default_kernel_name=$(KERNEL) \
		--LabApp.default_url=/lab/tree/notebooks/00_start_here.ipynb $(LAB_AS_ROOT)

# Outputs and execution counts out of the committed notebooks (a clean notebook stays as it is).
clean-notebooks: setup
	$(BIN)/nbstripout $(NBSTRIPOUT_ARGS) notebooks/*.ipynb

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
