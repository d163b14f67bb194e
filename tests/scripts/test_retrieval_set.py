"""scripts/retrieval_set.py on a tiny DialogSum-shaped folder: the files `task: embedding` reads, their
fields and counts, queries whose relevant ids are all in the corpus, and the held-out rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripts import load_script

pytestmark = pytest.mark.unit


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _record(split_id: str, dialogue: str, summary: str) -> dict:
    return {"id": split_id, "dialogue": dialogue, "summary": summary, "topic": "t"}


@pytest.fixture
def dialogsum(tmp_path: Path) -> Path:
    """Six train, three validation and three test dialogues; test has three references each. dev_2 repeats
    dev_0 and train_5 repeats dev_1 up to case and punctuation; test_0 has one summary twice, and test_1 and
    test_2 share one summary."""
    folder = tmp_path / "dialogsum"
    folder.mkdir()
    train = [_record(f"train_{i}", f"#Person1#: Hello {i}.\n#Person2#: Hi.", f"Greeting number {i}.") for i in range(5)]
    train.append(_record("train_5", "#Person1#: where is the bank\n#Person2#: over there", "Directions, again."))
    _write(folder / "train.jsonl", train)
    validation = [
        _record("dev_0", "#Person1#: I want a pan.\n#Person2#: This one?", "#Person1# buys a pan."),
        _record("dev_1", "#Person1#: Where is the bank?\n#Person2#: Over there.", "#Person2# gives directions."),
        _record("dev_2", "#Person1#: I want a pan!\n#Person2#:   this one?", "#Person1# wants a pan."),
    ]
    _write(folder / "validation.jsonl", validation)
    test_refs = {
        "test_0": ["A books a room.", "A books a room.", "A reserves a hotel room."],
        "test_1": ["B asks the time.", "Somebody wants the time.", "Two people talk."],
        "test_2": ["C orders food.", "Two people talk.", "C orders lunch."],
    }
    _write(
        folder / "test.jsonl",
        [_record(i, f"#Person1#: test dialogue {i}\n#Person2#: ok", refs[0]) for i, refs in test_refs.items()],
    )
    _write(
        folder / "test_all_references.jsonl",
        [{"id": i, "summaries": refs, "topics": ["t"] * 3} for i, refs in test_refs.items()],
    )
    (folder / "SOURCE.md").write_text("# DialogSum (tiny)\n", encoding="utf-8")
    return folder


def test_writes_the_embedding_files_with_their_fields_and_counts(dialogsum, tmp_path, capsys):
    out = tmp_path / "out"
    load_script("retrieval_set").main(["--data-dir", str(dialogsum), "--out", str(out)])
    names = {"train", "validation", "test", "validation_corpus", "validation_queries", "test_corpus", "test_queries"}
    assert {p.name for p in out.iterdir()} == {f"{n}.jsonl" for n in names} | {"SOURCE.md"}

    train, validation = _read(out / "train.jsonl"), _read(out / "validation.jsonl")
    assert all(set(row) == {"anchor", "positive"} for row in train + validation)
    assert len(train) == 5  # train_5 repeats dev_1 (held out) and is dropped
    assert "Directions, again." not in {row["anchor"] for row in train}
    assert validation[1] == {"anchor": "#Person2# gives directions.", "positive": validation[1]["positive"]}
    assert len(validation) == 3

    for split, n_corpus, n_queries in (("validation", 3, 3), ("test", 3, 7)):
        corpus, queries = _read(out / f"{split}_corpus.jsonl"), _read(out / f"{split}_queries.jsonl")
        assert all(set(doc) == {"id", "text"} and isinstance(doc["id"], str) for doc in corpus)
        assert all(set(q) == {"id", "text", "relevant"} and isinstance(q["id"], str) for q in queries)
        ids = [doc["id"] for doc in corpus]
        assert len(ids) == len(set(ids)) == n_corpus
        assert len(queries) == len({q["id"] for q in queries}) == len({q["text"] for q in queries}) == n_queries
        assert all(q["relevant"] and set(q["relevant"]) <= set(ids) for q in queries)

    dev = {q["id"]: q["relevant"] for q in _read(out / "validation_queries.jsonl")}
    assert dev == {"dev_0_s1": ["dev_0", "dev_2"], "dev_1_s1": ["dev_1"], "dev_2_s1": ["dev_0", "dev_2"]}
    test = {q["text"]: (q["id"], q["relevant"]) for q in _read(out / "test_queries.jsonl")}
    assert test["A books a room."] == ("test_0_s1", ["test_0"])  # written twice for test_0: one query
    assert test["A reserves a hotel room."] == ("test_0_s3", ["test_0"])
    assert test["Two people talk."] == ("test_1_s3", ["test_1", "test_2"])  # written for both
    assert test["C orders lunch."] == ("test_2_s3", ["test_2"])

    source = (out / "SOURCE.md").read_text(encoding="utf-8")
    assert "CC BY-NC-SA 4.0" in source and "non-commercial" in source
    assert f"python scripts/retrieval_set.py --data-dir {dialogsum} --out {out}" in source
    assert "test: corpus 3, queries 7 (2 summaries merged)" in capsys.readouterr().out


def test_max_train_rows_is_a_seeded_sample_in_source_order(dialogsum, tmp_path):
    script = load_script("retrieval_set")
    script.main(["--data-dir", str(dialogsum), "--out", str(tmp_path / "all")])
    for name in ("a", "b"):
        script.main(["--data-dir", str(dialogsum), "--out", str(tmp_path / name), "--max-train-rows", "3"])
    everything = _read(tmp_path / "all" / "train.jsonl")
    sample = _read(tmp_path / "a" / "train.jsonl")
    assert len(sample) == 3
    assert sample == [row for row in everything if row in sample]  # a subset, in source order
    for name in ("train.jsonl", "validation.jsonl", "test_corpus.jsonl", "test_queries.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    source_a = (tmp_path / "a" / "SOURCE.md").read_text(encoding="utf-8")
    assert source_a.replace(str(tmp_path / "a"), "OUT") == (tmp_path / "b" / "SOURCE.md").read_text(
        encoding="utf-8"
    ).replace(str(tmp_path / "b"), "OUT")


def test_more_train_rows_than_there_are_is_refused(dialogsum, tmp_path):
    with pytest.raises(SystemExit, match="only 5 train pairs"):
        load_script("retrieval_set").main(
            ["--data-dir", str(dialogsum), "--out", str(tmp_path / "out"), "--max-train-rows", "6"]
        )
