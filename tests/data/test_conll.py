import gzip
from pathlib import Path

import pytest

from finetune_kit.config.encoders import TokenClassificationData
from finetune_kit.data import load_data, load_source
from finetune_kit.errors import DataError
from finetune_kit.tasks.token_classification import to_iob2
from tests.builders import REPO

pytestmark = pytest.mark.unit

EXCERPT = Path(__file__).resolve().parent.parent / "fixtures" / "conll2003_eng_train_excerpt.gz"


def test_original_conll2003_file_loads_as_sentences():
    rows = load_source(str(EXCERPT), "train", "conll")
    assert len(rows) == 6  # -DOCSTART- and blank lines are boundaries, never tokens
    assert rows[0]["tokens"][:3] == ["EU", "rejects", "German"]
    assert rows[0]["tags"][:3] == ["I-ORG", "O", "I-MISC"]  # IOB1, as written in the file
    assert rows[1] == {"tokens": ["Peter", "Blackburn"], "tags": ["I-PER", "I-PER"]}
    assert rows[4]["tokens"][:2] == ["Rare", "Hendrix"]
    assert all("-DOCSTART-" not in r["tokens"] for r in rows)


def test_conll_extension_is_recognised(tmp_path):
    path = tmp_path / "tiny.conll"
    path.write_text("John B-PER\nlives O\n\nParis B-LOC\n")
    assert load_source(str(path), "train")["tags"] == [["B-PER", "O"], ["B-LOC"]]


def test_conll_loads_into_the_columns_the_recipe_names():
    config = TokenClassificationData(
        train=str(EXCERPT), validation=str(EXCERPT), format="conll", tokens_column="words", tags_column="ner_tags"
    )
    data = load_data(config, seed=0)
    assert data["train"].column_names == ["words", "ner_tags"]
    assert data["validation"][1] == {"words": ["Peter", "Blackburn"], "ner_tags": ["I-PER", "I-PER"]}


def test_shipped_ner_recipe_validates_on_the_original_iob1_files(cli, tiny_bert):
    splits = [f"--set=data.{split}={EXCERPT}" for split in ("train", "validation", "test")]
    result = cli(
        "validate",
        REPO / "recipes" / "conll2003_ner.yaml",
        f"--set=model.checkpoint={tiny_bert}",
        "--set=data.format=conll",
        *splits,
    )
    assert result.exit_code == 0, result.stderr
    assert not result.error_lines


def test_gzipped_conll_file_is_read_whatever_its_name(tmp_path):
    path = tmp_path / "eng.train"
    path.write_bytes(EXCERPT.read_bytes())
    assert len(load_source(str(path), "train", "conll")) == 6


def test_conll_file_not_in_utf8_names_its_line(tmp_path):
    path = tmp_path / "latin1.conll"
    path.write_bytes("Paris B-LOC\nCafé O\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"^data.train: latin1.conll line 2 is not UTF-8 text; save the file as UTF-8"):
        load_source(str(path), "train")


def test_conll_file_without_sentences_is_empty(tmp_path):
    path = tmp_path / "eng.testa.gz"
    path.write_bytes(gzip.compress(b"-DOCSTART- -X- -X- O\n\n"))
    with pytest.raises(DataError, match=r"^data.validation: eng.testa.gz is empty \(no rows\)"):
        load_source(str(path), "validation", "conll")


def test_conll_line_without_a_tag_column_is_named(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("John B-PER\nlives\n")
    with pytest.raises(DataError, match=r"data.train: bad.conll line 2 has 1 columns"):
        load_source(str(path), "train", "conll")


@pytest.mark.parametrize(
    ("iob1", "iob2"),
    [
        (["I-ORG", "O", "I-MISC"], ["B-ORG", "O", "B-MISC"]),
        (["I-PER", "I-PER"], ["B-PER", "I-PER"]),
        (["I-LOC", "I-PER", "B-PER", "I-PER"], ["B-LOC", "B-PER", "B-PER", "I-PER"]),
        (["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]),  # IOB2 passes unchanged
    ],
)
def test_iob1_becomes_iob2(iob1, iob2):
    assert to_iob2(iob1) == iob2
