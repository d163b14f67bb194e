import json

import pandas as pd
import pytest

from finetune_kit.config.recipe import DataConfig
from finetune_kit.data import load_data, load_source
from finetune_kit.errors import DataError

ROWS = [{"text": f"sentence number {i}", "label": i % 2} for i in range(20)]


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("rows.csv", lambda p: pd.DataFrame(ROWS).to_csv(p, index=False)),
        ("rows.tsv", lambda p: pd.DataFrame(ROWS).to_csv(p, index=False, sep="\t")),
        ("rows.jsonl", lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))),
        ("rows.json", lambda p: p.write_text(json.dumps(ROWS))),
        ("rows.parquet", lambda p: pd.DataFrame(ROWS).to_parquet(p)),
    ],
)
def test_every_tabular_format_loads_by_extension(tmp_path, name, write):
    path = tmp_path / name
    write(path)
    rows = load_source(str(path), "train")
    assert rows.column_names == ["text", "label"]
    assert rows[3] == {"text": "sentence number 3", "label": 1}


def test_text_files_give_one_row_per_line_newlines_kept(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("first line\nsecond line\nlast, unended")
    assert load_source(str(path), "train")["text"] == ["first line\n", "second line\n", "last, unended"]


def test_stated_format_beats_the_extension(tmp_path):
    path = tmp_path / "rows.data"
    pd.DataFrame(ROWS).to_csv(path, index=False)
    assert len(load_source(str(path), "train", "csv")) == 20


def test_unknown_extension_asks_for_data_format(tmp_path):
    path = tmp_path / "rows.data"
    path.write_text("x")
    with pytest.raises(DataError, match=r"data.train: cannot tell the format of rows.data; set data.format"):
        load_source(str(path), "train")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"data.validation: file not found: .*nope.csv"):
        load_source(str(tmp_path / "nope.csv"), "validation")


def test_malformed_file_is_named(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "ok", "label": 1}\n{"text": broken\n')
    with pytest.raises(DataError, match=r"data.train: cannot read broken.jsonl as jsonl"):
        load_source(str(path), "train")


def test_validation_split_is_cut_from_train_with_the_seed(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    config = DataConfig(train=str(path), validation_fraction=0.25)
    first, again = load_data(config, seed=7), load_data(config, seed=7)
    assert (len(first["train"]), len(first["validation"])) == (15, 5)
    assert first["validation"]["text"] == again["validation"]["text"]
    assert not set(first["validation"]["text"]) & set(first["train"]["text"])


def test_row_caps_apply_to_train_and_eval(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    config = DataConfig(train=str(path), validation=str(path), max_train_rows=8, max_eval_rows=3)
    data = load_data(config, seed=0)
    assert (len(data["train"]), len(data["validation"])) == (8, 3)
