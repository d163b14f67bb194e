import gzip
import json

import pandas as pd
import pytest

from finetune_kit.config.recipe import DataConfig
from finetune_kit.data import load_data, load_source
from finetune_kit.errors import DataError

pytestmark = pytest.mark.unit

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


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("rows.csv", ""),
        ("rows.csv", "text,label\n"),  # a header alone
        ("rows.tsv", "text\tlabel\n\n"),
        ("rows.jsonl", ""),
        ("rows.jsonl", "\n\n"),
        ("rows.json", "[\n]\n"),
        ("rows.txt", ""),
    ],
)
def test_empty_file_is_named(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(
        DataError, match=rf"^data.train: {name} is empty \(no rows\); give a file with at least one row$"
    ):
        load_source(str(path), "train")


@pytest.mark.parametrize("name", ["rows.csv", "rows.jsonl", "rows.txt", "rows.jsonl.gz"])
def test_file_not_in_utf8_names_its_line(tmp_path, name):
    lines = {"rows.csv": ["text,label", "tea,0", "café,1"], "rows.txt": ["tea", "bar", "café"]}
    text = "\n".join(lines.get(name, ['{"text": "tea"}', '{"text": "bar"}', '{"text": "café"}'])) + "\n"
    path = tmp_path / name
    encoded = text.encode("latin-1")
    path.write_bytes(gzip.compress(encoded) if name.endswith(".gz") else encoded)
    with pytest.raises(DataError, match=rf"^data.train: {name} line 3 is not UTF-8 text; save the file as UTF-8"):
        load_source(str(path), "train")


def test_binary_file_is_not_text(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))  # an image saved under a text name
    with pytest.raises(DataError, match=r"^data.train: rows.txt line 1 is not UTF-8 text"):
        load_source(str(path), "train")


def test_compressed_file_is_read_whatever_its_name(tmp_path):
    path = tmp_path / "rows.jsonl"  # gzipped, but the name does not say so
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS).encode()))
    assert len(load_source(str(path), "train")) == 20


def test_name_saying_gzip_for_a_plain_file_is_named(tmp_path):
    path = tmp_path / "rows.csv.gz"
    pd.DataFrame(ROWS).to_csv(path, index=False, compression=None)
    with pytest.raises(DataError, match=r"^data.train: rows.csv.gz is not gz-compressed; remove the .gz ending"):
        load_source(str(path), "train")


def test_parquet_file_under_another_name_is_named(tmp_path):
    path = tmp_path / "rows.csv"
    pd.DataFrame(ROWS).to_parquet(path)
    with pytest.raises(
        DataError, match=r"^data.train: rows.csv is a Parquet file; name it .parquet or set data.format"
    ):
        load_source(str(path), "train")


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("broken.jsonl", '{"text": "ok", "label": 1}\n{"text": broken\n', 2),
        ("broken.json", '[\n  {"text": "ok", "label": 1},\n  {"text": "no", "label": 0\n]\n', 4),
    ],
)
def test_malformed_json_names_its_line(tmp_path, name, text, line):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=rf"^data.train: {name} line {line} is not valid JSON \(.+\); fix or remove"):
        load_source(str(path), "train")


def test_malformed_csv_keeps_the_parser_reason(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("text,label\nok,1\ntoo,many,fields\n")
    with pytest.raises(DataError, match=r"^data.train: cannot read ragged.csv as csv: .*line 3, saw 3; fix the file"):
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
