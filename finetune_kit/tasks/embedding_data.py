"""What an embedding model learns from and is measured on: the four data layouts sentence-transformers
documents, read off the column names or named in the recipe, and the retrieval sets its evaluation searches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets import Dataset

from finetune_kit.config.embedding import EmbeddingData, RetrievalFiles
from finetune_kit.data import load_source
from finetune_kit.errors import DataError

# Each layout's columns, named as sentence-transformers names them: inputs in order, then the label.
LAYOUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "triplet": ("anchor", "positive", "negative"),
    "pair": ("anchor", "positive"),
    "scored-pair": ("sentence1", "sentence2", "score"),
    "labelled": ("text", "label"),
}


def detect_layout(config: EmbeddingData, columns: list[str]) -> str:
    """The recipe's layout, or the first whose column names the train data has (triplet before pair)."""
    if config.layout != "auto":
        return config.layout
    for layout, names in LAYOUT_COLUMNS.items():
        if set(names) <= set(columns):
            return layout
    known = "; ".join(f"{layout}: {', '.join(names)}" for layout, names in LAYOUT_COLUMNS.items())
    raise DataError(
        f"data.train: cannot tell the layout from the columns {', '.join(columns)}; name them as one of "
        f"({known}), or set data.layout and data.columns (e.g. columns: [question, answer])"
    )


def source_columns(config: EmbeddingData, layout: str) -> tuple[str, ...]:
    """The user's columns that hold the layout's, in its order."""
    wanted = LAYOUT_COLUMNS[layout]
    if config.columns is None:
        return wanted
    if len(config.columns) != len(wanted):
        raise DataError(
            f"data.columns: the {layout} layout has {len(wanted)} columns ({', '.join(wanted)}); "
            f"got {len(config.columns)}: {', '.join(config.columns)}"
        )
    return tuple(config.columns)


def check_rows(rows: Dataset, columns: tuple[str, ...], layout: str, where: str, scores_in_unit_range: bool) -> None:
    """Texts are text and scores numbers (in [0, 1] where the loss compares them with cosine similarity)."""
    missing = [column for column in columns if column not in rows.column_names]
    if missing:
        raise DataError(
            f"{where}: no column '{missing[0]}' for the {layout} layout; columns are: {', '.join(rows.column_names)}"
        )
    texts = columns[:-1] if layout in ("scored-pair", "labelled") else columns
    for column in texts:
        for row, text in enumerate(rows[column], start=1):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: row {row} has no text in column '{column}' (got {text!r})")
    if layout == "scored-pair":
        _check_scores(rows[columns[-1]], columns[-1], where, scores_in_unit_range)


def _check_scores(scores: list[Any], column: str, where: str, in_unit_range: bool) -> None:
    for row, score in enumerate(scores, start=1):
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise DataError(f"{where}: row {row} has score {score!r} in column '{column}'; scores are numbers")
        if in_unit_range and not 0 <= score <= 1:
            raise DataError(
                f"{where}: row {row} has score {score} in column '{column}', outside [0, 1], which the loss compares "
                "with cosine similarity; rescale the scores (STS-B's 0-5: divide by 5)"
            )


def canonical(rows: Dataset, columns: tuple[str, ...], layout: str) -> Dataset:
    """The layout's columns alone, renamed as sentence-transformers reads them (inputs by position, label by name)."""
    rows = rows.select_columns(list(columns))
    renames = {old: new for old, new in zip(columns, LAYOUT_COLUMNS[layout], strict=True) if old != new}
    # Two passes: a user's column may carry another layout column's name (columns: [positive, anchor]).
    rows = rows.rename_columns({old: f"__{new}" for old, new in renames.items()})
    rows = rows.rename_columns({f"__{new}": new for new in renames.values()})
    if layout == "scored-pair":
        rows = rows.map(lambda row: {"score": float(row["score"])})
    return rows


@dataclass(frozen=True)
class RetrievalSet:
    """Queries, the corpus they search, and which corpus ids each query should find."""

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]

    @classmethod
    def from_pairs(cls, rows: Dataset) -> RetrievalSet:
        """Each anchor a query, whose relevant text is its positive; the corpus every positive (and negative)."""
        ids: dict[str, str] = {}
        for column in ("positive", "negative"):
            for text in rows[column] if column in rows.column_names else ():
                ids.setdefault(text, f"d{len(ids)}")
        queries = {f"q{i}": anchor for i, anchor in enumerate(rows["anchor"])}
        relevant = {f"q{i}": {ids[positive]} for i, positive in enumerate(rows["positive"])}
        return cls(queries, {doc: text for text, doc in ids.items()}, relevant)

    @classmethod
    def from_files(cls, files: RetrievalFiles, field: str) -> RetrievalSet:
        """Read and check a corpus and its queries: every id a query points to is in the corpus."""
        corpus_rows = load_source(files.corpus, f"{field}.corpus")
        query_rows = load_source(files.queries, f"{field}.queries")
        corpus = _texts_by_id(corpus_rows, f"data.{field}.corpus")
        queries = _texts_by_id(query_rows, f"data.{field}.queries")
        if "relevant" not in query_rows.column_names:
            raise DataError(f"data.{field}.queries: no column 'relevant' (the corpus ids each query should find)")
        relevant: dict[str, set[str]] = {}
        for row, (query, ids) in enumerate(zip(queries, query_rows["relevant"], strict=True), start=1):
            ids = [ids] if isinstance(ids, str | int) else list(ids or [])
            if not ids:
                raise DataError(f"data.{field}.queries: row {row} (id {query}) has no relevant corpus id")
            for doc in map(str, ids):
                if doc not in corpus:
                    raise DataError(
                        f"data.{field}.queries: row {row} (id {query}) points to corpus id '{doc}', which "
                        f"data.{field}.corpus does not have"
                    )
            relevant[query] = set(map(str, ids))
        return cls(queries, corpus, relevant)


def _texts_by_id(rows: Dataset, where: str) -> dict[str, str]:
    for column in ("id", "text"):
        if column not in rows.column_names:
            raise DataError(f"{where}: no column '{column}'; columns are: {', '.join(rows.column_names)}")
    texts: dict[str, str] = {}
    for row, (key, text) in enumerate(zip(rows["id"], rows["text"], strict=True), start=1):
        if str(key) in texts:
            raise DataError(f"{where}: row {row} repeats id '{key}'; ids are unique")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: row {row} (id {key}) has no text")
        texts[str(key)] = text
    return texts
