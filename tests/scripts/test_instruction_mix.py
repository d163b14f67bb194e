"""scripts/instruction_mix.py on a tiny SST-2-shaped folder: the chat rows it writes and the
`--min-train-words` filter that keeps one-word parse-tree phrases out of training but never touches
the held-out split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripts import load_script

pytestmark = pytest.mark.unit


def _write(path: Path, sentences: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"sentence": text + " ", "label": i % 2} for i, text in enumerate(sentences)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def _texts(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [
        row["messages"][0]["content"].rsplit("\n\n", 1)[1].removeprefix("Sentence: ").removeprefix("Review: ")
        for row in rows
    ]


@pytest.fixture
def sst2(tmp_path: Path) -> Path:
    """Twelve train phrases (six of one word, six of five words) and four held-out sentences, two short."""
    folder = tmp_path / "data" / "text_classification" / "sst2"
    short = [f"word{i}" for i in range(6)]
    long = [f"a rather long phrase number {i}" for i in range(6)]
    _write(folder / "train.jsonl", short + long)
    _write(folder / "validation.jsonl", ["fine", "bad", "a whole held out sentence", "another whole sentence here"])
    return tmp_path / "data"


def _run(data_dir: Path, out: Path, *extra: str) -> None:
    load_script("instruction_mix").main(
        [
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
            "--tasks",
            "sst2",
            "--train-rows",
            "sst2=4",
            "--validation-per-task",
            "2",
            "--test-per-task",
            "4",
            *extra,
        ]
    )


def test_rows_are_one_turn_chat_with_a_one_word_label(sst2: Path, tmp_path: Path) -> None:
    _run(sst2, tmp_path / "out")
    row = json.loads((tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert row["messages"][1]["content"] in {"positive", "negative"}
    assert (row["task"], row["metric"]) == ("sst2", "accuracy")


def test_min_train_words_filters_training_phrases_not_the_held_out_split(sst2: Path, tmp_path: Path) -> None:
    _run(sst2, tmp_path / "out", "--min-train-words", "5")
    trained = _texts(tmp_path / "out" / "train.jsonl") + _texts(tmp_path / "out" / "validation.jsonl")
    assert len(trained) == 6 and all(len(text.split()) >= 5 for text in trained)
    assert sorted(_texts(tmp_path / "out" / "test.jsonl")) == sorted(
        ["fine", "bad", "a whole held out sentence", "another whole sentence here"]
    )


def test_too_few_long_phrases_fail_loudly(sst2: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="asked for 6 rows but only 0"):
        _run(sst2, tmp_path / "out", "--min-train-words", "9")
