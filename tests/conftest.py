"""Shared fixtures: a tiny BERT built locally (tokenizer trained with `tokenizers`), toy data, CLI runner."""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# huggingface_hub reads these at import time, so they are set before anything imports it. Every
# Hub request of the suite goes to the test server on loopback (tests/hub_server.py), never out.
HUB_PORT = _free_loopback_port()
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ["HF_HUB_OFFLINE"] = "0"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.pop("HF_TOKEN", None)
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="finetune-kit-tests-hf-home-")  # no saved login, fresh caches
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)  # the suite leaves no caches behind

REPO = Path(__file__).resolve().parent.parent
POSITIVE = ["good", "great", "fine", "lovely", "superb", "brilliant"]
NEGATIVE = ["bad", "awful", "poor", "dull", "terrible", "boring"]
FILLER = ["the", "film", "was", "a", "plot", "acting", "story", "really", "quite", "and", "it", "cast"]


def toy_sentiment_rows(count: int, seed: int = 0) -> list[dict]:
    """Texts whose label is given by one sentiment word among filler: learnable in seconds."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(FILLER, k=rng.randint(3, 12))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    return rows


def train_run(recipe: dict, folder: Path) -> Path:
    """Train `recipe` in this process (module-scoped fixtures share the run); its run folder."""
    from finetune_kit.commands.train import train
    from finetune_kit.config import load_recipe

    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    train(load_recipe(path))
    return Path(recipe["output_dir"])


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary trained on the toy vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast, set_seed

    folder = tmp_path_factory.mktemp("tiny-bert")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    corpus = [row["text"] for row in toy_sentiment_rows(500)] + [" ".join(POSITIVE + NEGATIVE + FILLER)]
    tokenizer.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(folder)
    config = BertConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    set_seed(0)  # the same random weights every session, so results do not depend on luck
    BertModel(config).save_pretrained(folder)
    return folder


def byte_level_bpe(corpus: list[str], vocab_size: int, special_tokens: list[str]):
    """A GPT-2 style byte-level BPE vocabulary learned from the corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide GPT-2 with a byte-level BPE vocabulary trained on the toy vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, set_seed

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    corpus = [row["text"] for row in toy_sentiment_rows(500)] + [" ".join(POSITIVE + NEGATIVE + FILLER)]
    tokenizer = byte_level_bpe(corpus, 300, ["<|endoftext|>"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    fast.save_pretrained(folder)
    eos = fast.eos_token_id
    config = GPT2Config(
        vocab_size=len(fast), n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=eos, eos_token_id=eos
    )
    set_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture
def toy_data(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_jsonl(tmp_path / "data" / "train.jsonl", toy_sentiment_rows(400, seed=1)),
        "validation": write_jsonl(tmp_path / "data" / "validation.jsonl", toy_sentiment_rows(100, seed=2)),
        "test": write_jsonl(tmp_path / "data" / "test.jsonl", toy_sentiment_rows(100, seed=3)),
    }


def classification_recipe(checkpoint: Path, data: dict[str, Path], output_dir: Path, **training) -> dict:
    """A small, fast classification recipe as a dict (tests tweak it, then write it)."""
    return {
        "task": "classification",
        "name": "toy",
        "model": {"checkpoint": str(checkpoint)},
        "data": {key: str(path) for key, path in data.items()},
        "training": {
            "epochs": 3,
            "batch_size": 8,
            "learning_rate": 3e-3,
            "warmup_ratio": 0.1,
            "max_length": 32,
            "logging_steps": 5,
            "precision": "fp32",
            **training,
        },
        "emissions": {"country_iso_code": "FRA", "measure_power_secs": 1},
        "output_dir": str(output_dir),
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


def toy_chat_rows(count: int, seed: int = 0) -> list[dict]:
    """Sentiment as instructions: the reply is the label word, so a tiny model learns it in seconds."""
    return [
        {
            "messages": [
                {"role": "user", "content": f"Sentiment of: {row['text']}"},
                {"role": "assistant", "content": "positive" if row["label"] == "pos" else "negative"},
            ],
            "task": "sentiment",
            "metric": "accuracy",
        }
        for row in toy_sentiment_rows(count, seed)
    ]


@pytest.fixture(scope="session")
def tiny_chat_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide llama with a byte-level BPE vocabulary and a ChatML chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, set_seed

    from finetune_kit.tasks.chat_template import CHATML

    folder = tmp_path_factory.mktemp("tiny-chat-llama")
    corpus = [f"user Sentiment of: {r['text']} assistant positive negative system" for r in toy_sentiment_rows(500)]
    tokenizer = byte_level_bpe(corpus, 400, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    set_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
