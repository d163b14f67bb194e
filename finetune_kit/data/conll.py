"""CoNLL column files: one token per line, blank lines between sentences."""

from __future__ import annotations

from collections.abc import Iterable

from datasets import Dataset

from finetune_kit.errors import DataError

# The columns a CoNLL file's tokens and tags load into unless the recipe names others.
CONLL_COLUMNS = ("tokens", "tags")
# Fields are positional (CoNLL-2003: `token POS chunk NER`): the token is the first, the tag the last.
TOKEN_FIELD, TAG_FIELD = 0, -1


def load_conll(lines: Iterable[str], name: str, role: str, columns: tuple[str, str]) -> Dataset:
    """Sentences of the file `name` as two list columns named `columns` (tokens, tags), so the
    recipe's own `data.tokens_column` / `data.tags_column` find them. `-DOCSTART-` lines and empty
    sentences are skipped; tags are returned as written (the NER task converts IOB1 to IOB2)."""
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        if len(fields) < 2:
            raise DataError(
                f"data.{role}: {name} line {number} has {len(fields)} columns; "
                "expected a token first and its tag last, separated by spaces or tabs"
            )
        tokens.append(fields[TOKEN_FIELD])
        tags.append(fields[TAG_FIELD])
    if tokens:
        sentences.append((tokens, tags))
    token_column, tag_column = columns
    return Dataset.from_dict({token_column: [s[0] for s in sentences], tag_column: [s[1] for s in sentences]})
