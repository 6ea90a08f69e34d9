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

RUN_ID ?= demo-$(shell date +%Y%m%d-%H%M%S)

demo: setup
	$(BIN)/dlrm-nb synth results/$(RUN_ID)/raw --rows-per-day 20000 --test-day-rows 100000 --seed 7
	$(BIN)/dlrm-nb prepare results/$(RUN_ID)/raw results/$(RUN_ID)/prepared --max-ind-range 40000000 --write-train
	$(BIN)/dlrm-nb train-demo results/$(RUN_ID)/prepared results/$(RUN_ID)/demo.pt --arch tb00_40M --seed 0
	$(BIN)/dlrm-nb score --checkpoint results/$(RUN_ID)/demo.pt --data results/$(RUN_ID)/prepared \
		--out results/$(RUN_ID)/predictions.npy
	@echo "results: results/$(RUN_ID) (prepared data, demo.pt, predictions.npy)"

clean:
	rm -rf $(VENV) .pytest_cache
