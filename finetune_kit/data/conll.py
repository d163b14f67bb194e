"""CoNLL column files (plain or gzipped): one token per line, blank lines between sentences."""

from __future__ import annotations

import gzip
from pathlib import Path

from datasets import Dataset

from finetune_kit.errors import DataError


def load_conll(path: Path, role: str, token_column: int = 0, tag_column: int = -1) -> Dataset:
    """Sentences as `tokens` / `tags` lists; `-DOCSTART-` lines and empty sentences are skipped.

    Columns are positional (CoNLL-2003: `token POS chunk NER`, so the defaults take the first and
    the last). Tags are returned as written: the NER task converts IOB1 to IOB2.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if tokens:
                    sentences.append((tokens, tags))
                tokens, tags = [], []
                continue
            if len(fields) < 2 or max(token_column, tag_column) >= len(fields):
                raise DataError(
                    f"data.{role}: {path.name} line {number} has {len(fields)} columns; "
                    f"expected a token in column {token_column} and a tag in column {tag_column}"
                )
            tokens.append(fields[token_column])
            tags.append(fields[tag_column])
    if tokens:
        sentences.append((tokens, tags))
    return Dataset.from_dict({"tokens": [s[0] for s in sentences], "tags": [s[1] for s in sentences]})
