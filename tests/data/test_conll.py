from pathlib import Path

import pytest

from finetune_kit.data import load_source
from finetune_kit.errors import DataError
from finetune_kit.tasks.token_classification import to_iob2

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
