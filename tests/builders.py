"""Builders the tests share: toy data, tiny models built locally, and small fast recipes of every
task, as dicts a test tweaks before writing. One place for them, so a change of the recipe format is
one change here, and no test module imports another.

Nothing here imports transformers or huggingface_hub at module level: tests/conftest.py sets the Hub
environment before they are imported."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import yaml

EMISSIONS = {"country_iso_code": "FRA", "measure_power_secs": 1}  # a fixed grid intensity: comparable grams

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


def toy_ner_rows(count: int, seed: int) -> list[dict]:
    """Sentiment words are entities (B-POS / B-NEG); "story" right after one continues it (I-)."""
    rng = random.Random(seed)
    filler = [word for word in FILLER if word != "story"]
    rows = []
    for _ in range(count):
        tokens, tags = [], []
        for _ in range(rng.randint(2, 6)):
            if rng.random() < 0.4:
                kind, words = ("POS", POSITIVE) if rng.random() < 0.5 else ("NEG", NEGATIVE)
                tokens.append(rng.choice(words))
                tags.append(f"B-{kind}")
                if rng.random() < 0.3:
                    tokens.append("story")
                    tags.append(f"I-{kind}")
            tokens.append(rng.choice(filler))
            tags.append("O")
        rows.append({"tokens": tokens, "ner_tags": tags})
    return rows


def write_corpus(path, rows):
    path.write_text("".join(row["text"] + "\n\n" for row in rows))  # blank lines are skipped
    return path


def mlm_recipe(checkpoint, tmp_path, run_dir, **data):
    return {
        "task": "masked-lm",
        "model": {"checkpoint": str(checkpoint)},
        "data": {
            "train": str(write_corpus(tmp_path / "train.txt", toy_sentiment_rows(600, 1))),
            "validation": str(write_corpus(tmp_path / "validation.txt", toy_sentiment_rows(100, 2))),
            **data,
        },
        "training": {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3, "max_length": 32, "precision": "fp32"},
        "emissions": {"country_iso_code": "FRA", "measure_power_secs": 1},
        "output_dir": str(run_dir),
    }


TEXTS = [row["text"] for row in toy_sentiment_rows(300, seed=5)]


def write_lines(path, texts):
    path.write_text("".join(text + "\n" for text in texts), encoding="utf-8")
    return path


def clm_recipe(tmp_path, run_dir, model, **extra):
    return {
        "task": "causal-lm",
        "model": model,
        "data": {
            "train": str(write_lines(tmp_path / "train.txt", TEXTS)),
            "validation": str(write_lines(tmp_path / "validation.txt", [r["text"] for r in toy_sentiment_rows(60, 6)])),
        },
        "training": {"epochs": 4, "batch_size": 8, "learning_rate": 3e-3, "max_length": 32, "precision": "fp32"},
        "generation": {"prompts": ["", "the film"], "max_new_tokens": 12},
        "emissions": {"country_iso_code": "FRA", "measure_power_secs": 1},
        "output_dir": str(run_dir),
        **extra,
    }


def sft_recipe(checkpoint, data_dir, run_dir, **extra):
    data = {
        "train": write_jsonl(data_dir / "train.jsonl", toy_chat_rows(400, seed=1)),
        "validation": write_jsonl(data_dir / "validation.jsonl", toy_chat_rows(60, seed=2)),
        "test": write_jsonl(data_dir / "test.jsonl", toy_chat_rows(60, seed=3)),
    }
    return {
        "task": "sft",
        "model": {"checkpoint": str(checkpoint)},
        "data": {split: str(path) for split, path in data.items()},
        "training": {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3, "max_length": 64, "precision": "fp32"},
        "generation": {"max_new_tokens": 4},
        "emissions": {"country_iso_code": "FRA", "measure_power_secs": 1},
        "output_dir": str(run_dir),
        **extra,
    }


def lora_sft_recipe(checkpoint, data_dir, run_dir) -> dict:
    """One epoch of LoRA SFT, its head saved whole: the run that preference tuning and GRPO start from."""
    recipe = sft_recipe(checkpoint, data_dir, run_dir, name="sft")
    recipe["training"]["epochs"] = 1
    return recipe | {"peft": {"method": "lora", "r": 8, "modules_to_save": ["lm_head"]}}


def toy_pairs(count: int, seed: int) -> list[dict]:
    """The right label is chosen, the wrong one rejected: separable from one word of the prompt."""
    pairs = []
    for row in toy_sentiment_rows(count, seed):
        right, wrong = ("positive", "negative") if row["label"] == "pos" else ("negative", "positive")
        pairs.append({"prompt": f"Sentiment of: {row['text']}", "chosen": right, "rejected": wrong})
    return pairs


EVASIVE = "I cannot tell."


def answer_or_evasion_pairs(count: int, seed: int) -> list[dict]:
    """The right label is chosen, an evasive reply rejected: a preference that a tiny model learns
    in a few steps, whatever the prompt says."""
    return [pair | {"rejected": EVASIVE} for pair in toy_pairs(count, seed)]


def toy_completions(count: int, seed: int) -> list[dict]:
    """KTO's unpaired layout: one completion per prompt, the answer (desirable) or the evasion."""
    rng = random.Random(seed)
    rows = []
    for pair in toy_pairs(count, seed):
        desirable = rng.random() < 0.5
        completion = pair["chosen"] if desirable else EVASIVE
        rows.append({"prompt": pair["prompt"], "completion": completion, "label": desirable})
    return rows


def preference_recipe(checkpoint, tmp_path, run_dir, **extra) -> dict:
    data = {
        "train": write_jsonl(tmp_path / "data" / "train.jsonl", toy_pairs(200, 1)),
        "validation": write_jsonl(tmp_path / "data" / "validation.jsonl", toy_pairs(40, 2)),
    }
    return {
        "task": "preference",
        "model": {"checkpoint": str(checkpoint)},
        "data": {split: str(path) for split, path in data.items()},
        "training": {"epochs": 3, "batch_size": 8, "learning_rate": 1e-2, "max_length": 64, "precision": "fp32"},
        "peft": {"method": "lora", "r": 8, "modules_to_save": ["lm_head"]},
        "emissions": {"country_iso_code": "FRA", "measure_power_secs": 1},
        "output_dir": str(run_dir),
        **extra,
    }


MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def adapter_recipe(toy_data, run_dir, peft, checkpoint=MINILM, **training):
    """One epoch (50 steps) on the toy sentiment data; unset, the learning rate is the
    classification family's adapter default."""
    training = {"epochs": 1, "learning_rate": None, "max_length": 24, **training}
    recipe = classification_recipe(checkpoint, toy_data, run_dir, **training)
    recipe["peft"] = peft
    return recipe


def ner_recipe(
    checkpoint: Path | str, folder: Path, run_dir: Path, rows: tuple[int, int] = (400, 100), **sections
) -> dict:
    """A tiny NER recipe on toy_ner_rows (train, validation counts in `rows`); `sections` replace
    whole sections (training, peft, ...)."""
    return {
        "task": "ner",
        "model": {"checkpoint": str(checkpoint)},
        "data": {
            "train": str(write_jsonl(folder / "train.jsonl", toy_ner_rows(rows[0], 1))),
            "validation": str(write_jsonl(folder / "validation.jsonl", toy_ner_rows(rows[1], 2))),
            "tags_column": "ner_tags",
        },
        "training": {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3, "precision": "fp32"},
        "emissions": dict(EMISSIONS),
        "output_dir": str(run_dir),
        **sections,
    }


def sentiment_splits(folder: Path, train: int, validation: int) -> dict[str, Path]:
    """Toy sentiment train and validation files (seeds 1 and 2) in `folder`."""
    return {
        "train": write_jsonl(folder / "train.jsonl", toy_sentiment_rows(train, seed=1)),
        "validation": write_jsonl(folder / "validation.jsonl", toy_sentiment_rows(validation, seed=2)),
    }


def build_tiny_bert(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary trained on the toy vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast, set_seed

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


def build_tiny_gpt2(folder: Path) -> Path:
    """A 2-layer, 32-wide GPT-2 with a byte-level BPE vocabulary trained on the toy vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, set_seed

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


def build_tiny_chat_llama(folder: Path) -> Path:
    """A 2-layer, 32-wide llama with a byte-level BPE vocabulary and a ChatML chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, set_seed

    from finetune_kit.tasks.chat_template import CHATML

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


def free_loopback_port() -> int:
    """A port nothing listens on now, for a server or a rendezvous a test starts on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
