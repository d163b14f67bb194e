"""Shared fixtures: a tiny BERT built locally (tokenizer trained with `tokenizers`), toy data, CLI runner."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.builders import (
    build_tiny_bert,
    build_tiny_chat_llama,
    build_tiny_gpt2,
    free_loopback_port,
    toy_sentiment_rows,
    write_jsonl,
)

# huggingface_hub reads these at import time, so they are set before anything imports it. Every
# Hub request of the suite goes to the test server on loopback (tests/hub_server.py), never out.
HUB_PORT = free_loopback_port()
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ["HF_HUB_OFFLINE"] = "0"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.pop("HF_TOKEN", None)
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="finetune-kit-tests-hf-home-")  # no saved login, fresh caches
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)  # the suite leaves no caches behind


TIERS = ("unit", "integration", "slow")


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: an unmarked test is selectable as integration
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test is in one tier: `unit` and `slow` are marked where the test is written; the rest
    train a tiny model or start a process, and are marked `integration` here."""
    del config
    for item in items:
        tiers = [tier for tier in TIERS if item.get_closest_marker(tier)]
        if len(tiers) > 1:
            raise pytest.UsageError(f"{item.nodeid} is marked {' and '.join(tiers)}; a test is in one tier")
        if not tiers:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary trained on the toy vocabulary."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide GPT-2 with a byte-level BPE vocabulary trained on the toy vocabulary."""
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture
def toy_data(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_jsonl(tmp_path / "data" / "train.jsonl", toy_sentiment_rows(400, seed=1)),
        "validation": write_jsonl(tmp_path / "data" / "validation.jsonl", toy_sentiment_rows(100, seed=2)),
        "test": write_jsonl(tmp_path / "data" / "test.jsonl", toy_sentiment_rows(100, seed=3)),
    }


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[[dict], Path]:
    def write(recipe: dict, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
        return path

    return write


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run `finetune-kit ARGS...` in-process, exactly as the console script does."""
    from finetune_kit import cli as cli_module

    main = cli_module.main
    for console in (cli_module.console, cli_module.errors):
        monkeypatch.setattr(console, "width", 200)  # as in a wide terminal: tables keep ids on one line

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["finetune-kit", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run


@pytest.fixture(scope="session")
def tiny_chat_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide llama with a byte-level BPE vocabulary and a ChatML chat template."""
    return build_tiny_chat_llama(tmp_path_factory.mktemp("tiny-chat-llama"))
