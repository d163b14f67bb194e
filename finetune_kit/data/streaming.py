"""`data.streaming`: data.train read lazily through datasets' iterable datasets, so a corpus larger than memory or
disk trains. Its first rows are loaded whole (checked as any loaded split is; labels and a new tokenizer are learned
from them); every later row is checked as training reads it, and a bad one is named by its file and row number."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict, IterableDataset

from finetune_kit.config.recipe import DataConfig, HubDataSource
from finetune_kit.data.loading import (
    FORMATS,
    JSON_FORMATS,
    capped,
    file_format,
    library_cause,
    load_source,
    locate,
    raw_lines,
)
from finetune_kit.errors import DataError, first_line

HEAD_ROWS = 1000  # the first training rows, loaded whole before training
HELD_OUT_ROWS = 1000  # without data.validation (and data.max_eval_rows): the stream's first rows become it
SHUFFLE_ROWS = 10_000  # the shuffle buffer: a file sorted by label or topic still trains mixed

# A task's check of one streamed row: (row, where, row number); raises DataError naming both.
RowCheck = Callable[[dict[str, Any], str, int], None]


@dataclass(frozen=True)
class Stream:
    """data.train past its held-out rows, read lazily, each row with the columns of the first rows."""

    rows: IterableDataset
    columns: tuple[str, ...]  # the first rows' columns, which every row has
    where: str  # "data.train (corpus.jsonl)": the field and the source, for a row's error
    first_row: int  # the row number of its first row in the source
    seed: int

    def checked(self, check: RowCheck) -> IterableDataset:
        """The rows, each passed to `check` with its row number as training reads it, then shuffled in a seeded
        buffer. Numbered before the shuffle: the number is the row's place in the source."""

        def check_row(row: dict[str, Any], index: int) -> dict[str, Any]:
            check(row, self.where, self.first_row + index)
            return {}

        return self.rows.map(check_row, with_indices=True).shuffle(seed=self.seed, buffer_size=SHUFFLE_ROWS)


def require_one_process(config: DataConfig, processes: int) -> None:
    """A stream is read by one process: several would each need their own share of the rows."""
    if config.streaming and processes > 1:
        raise DataError(
            "data.streaming: a stream trains in one process for now; train without --nodes, --processes-per-node "
            "and --ray, or without data.streaming"
        )


def load_streamed(config: DataConfig, seed: int) -> tuple[DatasetDict, Stream]:
    """The splits loaded whole (train's first HEAD_ROWS rows, validation, test) and data.train as a stream.
    Without data.validation, the stream's first rows (data.max_eval_rows, else HELD_OUT_ROWS) are held out for it
    and training starts after them."""
    require_one_process(config, int(os.environ.get("WORLD_SIZE", "1")))  # set by torchrun, accelerate, Ray Train
    found = locate(config.train, "train")
    held_out = 0 if config.validation is not None else config.max_eval_rows or HELD_OUT_ROWS
    first = list(islice(_rows(_reference(found), "train", config.format), held_out + HEAD_ROWS))
    if len(first) <= held_out:
        raise DataError(
            f"data.train: {len(first)} rows are too few to hold out {held_out} for validation; "
            "give data.validation or more rows"
        )
    columns = tuple(dict.fromkeys(column for row in first for column in row))
    splits = {"train": _as_split(first[held_out:], columns)}
    if config.validation is not None:
        validation = load_source(config.validation, "validation", config.format)
        splits["validation"] = capped(validation, "validation", config.max_eval_rows, seed)
    else:
        splits["validation"] = _as_split(first[:held_out], columns)
    if config.test is not None:
        splits["test"] = capped(load_source(config.test, "test", config.format), "test", config.max_eval_rows, seed)
    rows = IterableDataset.from_generator(
        _rows,
        gen_kwargs={"source": _reference(found), "role": "train", "data_format": config.format, "columns": columns},
    ).skip(held_out)
    if config.max_train_rows is not None:
        rows = rows.take(config.max_train_rows)
    return DatasetDict(splits), Stream(rows, columns, f"data.train ({_name(found)})", held_out + 1, seed)


def _as_split(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Dataset:
    return Dataset.from_list([{column: row.get(column) for column in columns} for row in rows])


def _reference(found: Path | HubDataSource) -> str | dict[str, Any]:
    """The source as plain values: what datasets can hash among a generator's arguments."""
    return found.model_dump() if isinstance(found, HubDataSource) else str(found)


def _name(found: Path | HubDataSource) -> str:
    return found.hub if isinstance(found, HubDataSource) else found.name


def _rows(
    source: str | dict[str, Any], role: str, data_format: str | None, columns: tuple[str, ...] | None = None
) -> Iterator[dict[str, Any]]:
    """Each row as datasets reads it, with `columns` when given (a missing one None, for the task's check to name).
    A row the reader cannot read ends the stream with one line naming it."""
    found = HubDataSource(**source) if isinstance(source, dict) else Path(source)
    number = 0  # rows read so far
    try:
        for row in _open(found, role, data_format):
            number += 1
            yield row if columns is None else {column: row.get(column) for column in columns}
    except DataError:
        raise
    except Exception as err:  # the readers raise many types, mostly without a row number
        problem = _unreadable_row(found, data_format, number, set(columns or ()), err)
        raise DataError(f"data.{role} ({_name(found)}): {problem}") from None


def _open(found: Path | HubDataSource, role: str, data_format: str | None) -> IterableDataset:
    if isinstance(found, HubDataSource):
        split = found.split or role
        return datasets.load_dataset(found.hub, found.config, split=split, revision=found.revision, streaming=True)
    fmt = data_format or file_format(found)
    if fmt not in FORMATS:
        raise DataError(
            f"data.{role}: cannot stream {found.name} (format {fmt or 'unknown'}); "
            f"stream {', '.join(FORMATS)} files, or remove data.streaming"
        )
    builder, kwargs = FORMATS[fmt]
    return datasets.load_dataset(builder, data_files={role: str(found)}, split=role, streaming=True, **kwargs)


def _unreadable_row(
    found: Path | HubDataSource, data_format: str | None, after: int, columns: set[str], err: Exception
) -> str:
    """Why reading stopped past row `after`. datasets reads a file in blocks and names no row: in a JSON-lines
    file, the first later row that does not parse, or brings a column the first rows lack, is found here."""
    if isinstance(found, Path) and (data_format or file_format(found)) in JSON_FORMATS:
        lines = (line for line in raw_lines(found) if line.strip())
        for number, line in enumerate(islice(lines, after, None), start=after + 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as problem:
                return f"row {number} is not valid JSON ({problem.msg}); fix or remove that row"
            extra = sorted(set(row) - columns) if isinstance(row, dict) and columns else []
            if extra:
                return (
                    f"row {number} has column '{extra[0]}', which the first rows do not have "
                    f"(columns are: {', '.join(sorted(columns))}); fix or remove that row"
                )
    return f"cannot read past row {after}: {first_line(library_cause(err))}; fix the file"
