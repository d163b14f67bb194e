"""Small helpers every task shares, written once: the ignored label, logits unwrapping, counting
cut rows, and word lists read as text."""

from __future__ import annotations

import logging
from typing import Any

from datasets import Dataset

logger = logging.getLogger("finetune_kit.tasks")

IGNORE_INDEX = -100  # the label id losses and metrics skip (padding, special tokens, prompts)
CUT_COLUMN = "cut"  # a temporary column: whether `preprocess` cut the row at the length limit


def first_output(output: Any) -> Any:
    """Models return a tuple when they give more than logits (hidden states, caches): the logits
    come first."""
    return output[0] if isinstance(output, tuple) else output


def as_text(value: Any) -> str:
    """A text cell, or a word list (a NER tokens column) joined by spaces."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value or "")


def warn_cut(what: str, cut: int, total: int, limit: int) -> None:
    """Rows cut at the length limit lose text silently unless the user is told how many."""
    if cut:
        logger.warning(
            "%s: %d of %d cut at %d tokens (raise training.max_length to keep them whole)", what, cut, total, limit
        )


def drop_cut_column(rows: Dataset, what: str, limit: int) -> Dataset:
    """Count and report the rows `preprocess` marked as cut, then drop the marker column."""
    warn_cut(what, sum(rows[CUT_COLUMN]), len(rows), limit)
    return rows.remove_columns(CUT_COLUMN)
