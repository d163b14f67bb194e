"""What `predict` reads and writes: the rows to predict on, the predictions as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from finetune_kit.data import conll_columns_of, load_source
from finetune_kit.errors import DataError
from finetune_kit.inference.predictor import Predictor


def read_inputs(run: Predictor, input_file: Path | None, texts: list[str]) -> Dataset:
    """Rows to predict on: a data file with the recipe's input columns, or `--text` values."""
    columns = run.task.input_columns()
    if texts:
        if len(columns) > 1:
            raise DataError(f"--text: this model reads {len(columns)} columns ({', '.join(columns)}); use --input FILE")
        return Dataset.from_dict({columns[0]: texts})
    if input_file is None:
        raise DataError("predict needs --input FILE or --text TEXT")
    rows = load_source(str(input_file), "input", conll_columns=conll_columns_of(run.recipe.data))
    missing = [c for c in columns if c not in rows.column_names]
    if missing:
        raise DataError(f"{input_file}: column '{missing[0]}' not found; columns are: {', '.join(rows.column_names)}")
    return rows


def write_predictions(path: Path, records: list[dict[str, Any]]) -> None:
    """JSON lines; or, for a `.npy` path, the predictions' vectors (an embedding model's) as one float32 matrix."""
    if path.suffix.lower() == ".npy":
        if not records or any("embedding" not in record for record in records):
            raise DataError(
                f"--output {path.name}: .npy holds vectors, which only an embedding model predicts; use .jsonl"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.asarray([record["embedding"] for record in records], dtype=np.float32))
        return
    write_jsonl(path, records)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
